// The page's skeleton, built from the panels in order: the top bar, the strip
// of figures, then the cards of the grid. index.html holds only the body.
import { h } from './dom.js';
import type { Legend, Panel } from './panel.js';

/** Builds every panel's frame into `body`; returns each panel's element by id. */
export function buildPage(body: HTMLElement, panels: readonly Panel[]): Map<string, HTMLElement> {
  const hosts = new Map<string, HTMLElement>();
  const main = h('main');
  const grid = h('section', { class: 'grid' });
  for (const panel of panels) {
    if (hosts.has(panel.id)) throw new Error(`two dashboard panels have the id "${panel.id}"`);
    const place = panel.place;
    if (place.kind === 'top') {
      const el = h('header', { id: panel.id, class: 'header' });
      body.prepend(el);
      hosts.set(panel.id, el);
    } else if (place.kind === 'strip') {
      const el = h('section', { id: panel.id, class: 'tiles', 'aria-label': place.label });
      main.append(el);
      hosts.set(panel.id, el);
    } else {
      const el = h('div', { id: panel.id, class: place.hostClass });
      const span = place.span ? ` span-${place.span}` : '';
      grid.append(
        h(
          'article',
          { class: `card${span}` },
          h('h2', {}, panel.title, place.legend && ' ', place.legend && legend(place.legend)),
          el,
        ),
      );
      hosts.set(panel.id, el);
    }
  }
  main.append(grid);
  body.append(main);
  return hosts;
}

function legend(l: Legend): HTMLElement {
  if ('note' in l) return h('span', { class: 'legend muted' }, l.note);
  return h(
    'span',
    { class: 'legend' },
    ...l.keys.map(([className, text]) => h('span', { class: `key ${className}` }, text)),
  );
}
