// The workers: a table (one row per rank, with its last step split into
// compute / all-reduce / waiting) and the ring they all-reduce around.
import { h, mount, s } from '../dom.js';
import { type WorkerInfo, isLive } from '../events.js';
import { ago, bytes, ms } from '../format.js';
import type { RunView } from '../run.js';

export function renderWorkers(el: HTMLElement, view: RunView): void {
  if (view.workers.length === 0) {
    mount(el, h('p', { class: 'empty' }, 'no workers yet'));
    return;
  }
  const now = view.now();
  const slowest = Math.max(1, ...view.workers.map(stepMs));
  const rows = view.workers.map((w) =>
    h(
      'tr',
      {
        'data-testid': 'worker-row',
        'data-rank': w.rank,
        'data-status': w.status,
        'data-live': view.live(w),
        class: view.live(w) ? '' : 'gone',
      },
      h('td', { class: 'num' }, w.rank),
      h(
        'td',
        { title: `${w.workerId} (pid ${w.pid})` },
        w.host,
        h('span', { class: 'muted' }, ` · pid ${w.pid}`),
      ),
      h('td', {}, w.device),
      h('td', {}, w.backend),
      h('td', {}, statusPill(w, view)),
      h('td', { class: stale(w, view) ? 'num warn-text' : 'num' }, ago(w.lastHeartbeatMs, now)),
      h('td', { class: 'num' }, w.rssBytes > 0 ? bytes(w.rssBytes) : '–'),
      h('td', { class: 'split-cell' }, split(w, slowest)),
    ),
  );
  mount(
    el,
    h(
      'table',
      { class: 'workers' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ...['rank', 'host', 'device', 'backend', 'state', 'heartbeat', 'memory'].map((c) =>
            h('th', {}, c),
          ),
          h(
            'th',
            {},
            'last step: ',
            h('span', { class: 'key compute' }, 'compute'),
            ' ',
            h('span', { class: 'key allreduce' }, 'all-reduce'),
            ' ',
            h('span', { class: 'key wait' }, 'waiting'),
          ),
        ),
      ),
      h('tbody', {}, ...rows),
    ),
  );
  // Segment widths through the CSSOM (the CSP forbids inline style attributes).
  for (const seg of el.querySelectorAll<HTMLElement>('[data-width]'))
    seg.style.width = `${seg.dataset.width}%`;
}

const stepMs = (w: WorkerInfo) => w.computeMs + w.allReduceMs + w.waitMs;

function split(w: WorkerInfo, slowest: number): HTMLElement {
  const total = stepMs(w);
  const pct = (x: number) => ((100 * x) / slowest).toFixed(2);
  return h(
    'div',
    {
      class: 'split',
      title: `compute ${ms(w.computeMs)} · all-reduce ${ms(w.allReduceMs)} · waiting ${ms(w.waitMs)}`,
    },
    h(
      'div',
      { class: 'split-bar' },
      h('span', { class: 'compute', 'data-width': pct(w.computeMs) }),
      h('span', { class: 'allreduce', 'data-width': pct(w.allReduceMs) }),
      h('span', { class: 'wait', 'data-width': pct(w.waitMs) }),
    ),
    h(
      'div',
      { class: 'split-text' },
      total > 0 ? `${ms(w.computeMs)} · ${ms(w.allReduceMs)} · ${ms(w.waitMs)}` : '–',
    ),
  );
}

/** A worker's last reported state; "stopped" once the run has ended. */
function statusPill(w: WorkerInfo, view: RunView): HTMLElement {
  const ended = view.end !== null && isLive(w);
  return h('span', { class: `pill ${ended ? 'muted' : tone(w)}` }, ended ? 'stopped' : w.status);
}

function tone(w: WorkerInfo): string {
  return { training: 'live', ready: 'ok', starting: 'muted', lost: 'bad', left: 'muted' }[w.status];
}

/** No message for 5 s from a worker in the ring. */
function stale(w: WorkerInfo, view: RunView): boolean {
  return view.live(w) && w.lastHeartbeatMs > 0 && view.now() - w.lastHeartbeatMs > 5000;
}

/** The ring: ranks on a circle, an arrow from each live rank to the one it sends to. */
export function renderRing(el: HTMLElement, view: RunView): void {
  const size = 232;
  const c = size / 2;
  const radius = size / 2 - 34;
  const workers = view.workers;
  const svg = s('svg', {
    class: 'ring',
    width: size,
    height: size,
    viewBox: `0 0 ${size} ${size}`,
    role: 'img',
    'aria-label': 'ring all-reduce order',
  });
  svg.append(
    s(
      'defs',
      {},
      s(
        'marker',
        {
          id: 'arrow',
          viewBox: '0 0 10 10',
          refX: 9,
          refY: 5,
          markerWidth: 7,
          markerHeight: 7,
          orient: 'auto-start-reverse',
        },
        s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow-head' }),
      ),
    ),
  );
  if (workers.length === 0) {
    svg.append(
      s('text', { x: c, y: c, 'text-anchor': 'middle', class: 'chart-empty' }, 'no ring yet'),
    );
    mount(el, svg);
    return;
  }
  const at = new Map<number, { x: number; y: number }>();
  workers.forEach((w, i) => {
    const angle = -Math.PI / 2 + (2 * Math.PI * i) / workers.length;
    at.set(w.rank, { x: c + radius * Math.cos(angle), y: c + radius * Math.sin(angle) });
  });
  const nodeR = 17;
  for (const w of workers) {
    const from = at.get(w.rank)!;
    const to = at.get(w.ringNext);
    if (!isLive(w) || !to || w.ringNext === w.rank) continue;
    // A curved edge, trimmed to the node circles, bowing outward.
    const dx = to.x - from.x;
    const dy = to.y - from.y;
    const len = Math.hypot(dx, dy);
    const [ux, uy] = [dx / len, dy / len];
    const a = { x: from.x + ux * nodeR, y: from.y + uy * nodeR };
    const b = { x: to.x - ux * (nodeR + 2), y: to.y - uy * (nodeR + 2) };
    const bow = workers.length === 2 ? 22 : 10;
    const mid = { x: (a.x + b.x) / 2 + uy * -bow, y: (a.y + b.y) / 2 - ux * -bow };
    svg.append(
      s('path', {
        class: 'ring-edge',
        d: `M${a.x},${a.y} Q${mid.x},${mid.y} ${b.x},${b.y}`,
        'marker-end': 'url(#arrow)',
      }),
    );
  }
  for (const w of workers) {
    const p = at.get(w.rank)!;
    svg.append(
      s(
        'g',
        { class: `ring-node ${view.live(w) ? tone(w) : 'gone'}` },
        s(
          'title',
          {},
          `rank ${w.rank}: ${w.host} (${w.device}, ${w.status}) sends to rank ${w.ringNext}`,
        ),
        s('circle', { cx: p.x, cy: p.y, r: nodeR }),
        s('text', { x: p.x, y: p.y + 4, 'text-anchor': 'middle' }, w.rank),
      ),
    );
  }
  const order = ringOrder(workers.filter(isLive));
  mount(el, svg, h('div', { class: 'ring-caption muted' }, order ? `sends: ${order}` : ''));
}

/** "0 → 1 → 2 → 0", following ringNext from the lowest live rank. */
function ringOrder(live: WorkerInfo[]): string {
  if (live.length === 0) return '';
  const next = new Map(live.map((w) => [w.rank, w.ringNext]));
  const start = live[0]!.rank;
  const path = [start];
  for (
    let r = next.get(start);
    r !== undefined && r !== start && path.length <= live.length;
    r = next.get(r)
  )
    path.push(r);
  return [...path, start].join(' → ');
}
