// The workers: a table (one row per rank, with its last step split into
// compute / all-reduce / waiting) and the ring they all-reduce around.
import type { WorkerInfo } from '@lorafleet/run-events';
import { h, mount, s } from '../dom.js';
import { ago, bytes, ms } from '../format.js';
import type { Panel } from '../panel.js';
import { type RunView, isLive } from '../run.js';

export const workersPanel: Panel = {
  id: 'workers',
  title: 'Workers',
  touches: ['run', 'workers', 'end', 'clock'],
  place: { kind: 'card', span: 3, hostClass: 'table-host' },
  render: renderWorkers,
};

export const ringPanel: Panel = {
  id: 'ring',
  title: 'Ring',
  touches: ['run', 'workers', 'end'],
  place: { kind: 'card', hostClass: 'ring-host', legend: { note: 'who sends to whom' } },
  render: renderRing,
};

function renderWorkers(el: HTMLElement, view: RunView): void {
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

const RING_SIZE = 232;
const NODE_R = 17;

type Position = { x: number; y: number };

/** The ring: ranks on a circle, an arrow from each live rank to the one it sends to. */
function renderRing(el: HTMLElement, view: RunView): void {
  const svg = ringCanvas();
  const workers = view.workers;
  const c = RING_SIZE / 2;
  if (workers.length === 0) {
    svg.append(
      s('text', { x: c, y: c, 'text-anchor': 'middle', class: 'chart-empty' }, 'no ring yet'),
    );
    mount(el, svg);
    return;
  }
  const radius = RING_SIZE / 2 - 34;
  const at = new Map<number, Position>();
  workers.forEach((w, i) => {
    const angle = -Math.PI / 2 + (2 * Math.PI * i) / workers.length;
    at.set(w.rank, { x: c + radius * Math.cos(angle), y: c + radius * Math.sin(angle) });
  });
  for (const w of workers) {
    const from = at.get(w.rank)!;
    const to = at.get(w.ringNext);
    if (!isLive(w) || !to || w.ringNext === w.rank) continue;
    svg.append(ringEdge(from, to, workers.length === 2 ? 22 : 10));
  }
  for (const w of workers) svg.append(ringNode(w, at.get(w.rank)!, view));
  const order = ringOrder(workers.filter(isLive));
  mount(el, svg, h('div', { class: 'ring-caption muted' }, order ? `sends: ${order}` : ''));
}

/** The empty svg, with the arrow head its edges end in. */
function ringCanvas(): SVGElement {
  const svg = s('svg', {
    class: 'ring',
    width: RING_SIZE,
    height: RING_SIZE,
    viewBox: `0 0 ${RING_SIZE} ${RING_SIZE}`,
    role: 'img',
    'aria-label': 'ring all-reduce order',
  });
  const marker = s(
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
  );
  svg.append(s('defs', {}, marker));
  return svg;
}

/** A curved edge from one node to the next, trimmed to the node circles, bowing outward. */
function ringEdge(from: Position, to: Position, bow: number): SVGElement {
  const dx = to.x - from.x;
  const dy = to.y - from.y;
  const len = Math.hypot(dx, dy);
  const [ux, uy] = [dx / len, dy / len];
  const a = { x: from.x + ux * NODE_R, y: from.y + uy * NODE_R };
  const b = { x: to.x - ux * (NODE_R + 2), y: to.y - uy * (NODE_R + 2) };
  const mid = { x: (a.x + b.x) / 2 + uy * -bow, y: (a.y + b.y) / 2 - ux * -bow };
  return s('path', {
    class: 'ring-edge',
    d: `M${a.x},${a.y} Q${mid.x},${mid.y} ${b.x},${b.y}`,
    'marker-end': 'url(#arrow)',
  });
}

/** A rank's circle, coloured by its status, with what it is in the tooltip. */
function ringNode(w: WorkerInfo, p: Position, view: RunView): SVGElement {
  return s(
    'g',
    { class: `ring-node ${view.live(w) ? tone(w) : 'gone'}` },
    s(
      'title',
      {},
      `rank ${w.rank}: ${w.host} (${w.device}, ${w.status}) sends to rank ${w.ringNext}`,
    ),
    s('circle', { cx: p.x, cy: p.y, r: NODE_R }),
    s('text', { x: p.x, y: p.y + 4, 'text-anchor': 'middle' }, w.rank),
  );
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
