// The dashboard page: folds the coordinator's event stream into a RunView and
// redraws the sections an event touched, at most once per frame.
import './style.css';
import { fetchDownloads, followEvents } from './api.js';
import type { RunEvent } from './events.js';
import { RunView } from './run.js';
import { renderCharts } from './views/charts.js';
import { renderCheckpoints } from './views/checkpoints.js';
import { renderLog } from './views/event-log.js';
import { renderHeader, renderTiles } from './views/overview.js';
import { renderFacts } from './views/run-facts.js';
import { renderRing, renderWorkers } from './views/workers.js';

type Section = 'header' | 'tiles' | 'charts' | 'facts' | 'workers' | 'checkpoints' | 'log';

const byId = (id: string): HTMLElement => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`index.html has no #${id}`);
  return el;
};

const hosts = {
  header: byId('header'),
  tiles: byId('tiles'),
  loss: byId('chart-loss'),
  lr: byId('chart-lr'),
  throughput: byId('chart-throughput'),
  facts: byId('facts'),
  workers: byId('workers'),
  ring: byId('ring'),
  checkpoints: byId('checkpoints'),
  log: byId('log'),
};

const ALL: Section[] = ['header', 'tiles', 'charts', 'facts', 'workers', 'checkpoints', 'log'];
const TOUCHES: Record<RunEvent['type'], Section[]> = {
  run: ALL,
  step: ['header', 'tiles', 'charts'],
  eval: ['tiles', 'charts'],
  workers: ['tiles', 'workers'],
  checkpoint: ['checkpoints', 'log'],
  log: ['log'],
  end: ['header', 'workers', 'log', 'checkpoints'],
};

let view = new RunView();
const dirty = new Set<Section>(ALL);
let frame = 0;

function mark(sections: readonly Section[]): void {
  for (const section of sections) dirty.add(section);
  if (frame === 0 && !document.hidden) frame = requestAnimationFrame(render);
}

function render(): void {
  frame = 0;
  const draw: Record<Section, () => void> = {
    header: () => renderHeader(hosts.header, view),
    tiles: () => renderTiles(hosts.tiles, view),
    charts: () => renderCharts(hosts, view),
    facts: () => renderFacts(hosts.facts, view),
    workers: () => {
      renderWorkers(hosts.workers, view);
      renderRing(hosts.ring, view);
    },
    checkpoints: () => renderCheckpoints(hosts.checkpoints, view),
    log: () => renderLog(hosts.log, view),
  };
  for (const section of dirty) draw[section]();
  dirty.clear();
  const loss = view.trainLoss.at(-1)?.[1];
  document.title = view.facts
    ? `${view.step}/${view.facts.steps} · loss ${loss?.toFixed(3) ?? '–'} · LoRA Fleet`
    : 'LoRA Fleet';
}

let downloadsTimer: ReturnType<typeof setTimeout> | undefined;
/** Which adapters are on disk changes with checkpoints (and pruning) and at the end. */
function refreshDownloads(): void {
  clearTimeout(downloadsTimer);
  downloadsTimer = setTimeout(() => {
    fetchDownloads().then(
      (downloads) => {
        view.downloads = downloads;
        mark(['checkpoints']);
      },
      () => undefined,
    );
  }, 300);
}

const stopFollowing = followEvents({
  onReset() {
    view = new RunView();
    view.connection = 'live';
    mark(ALL);
  },
  onEvents(events) {
    const touched = new Set<Section>();
    for (const event of events) {
      view.apply(event);
      for (const section of TOUCHES[event.type]) touched.add(section);
      if (event.type === 'checkpoint' || event.type === 'end' || event.type === 'run')
        refreshDownloads();
    }
    mark([...touched]);
  },
  onConnection(state) {
    // After the run's end, a dropped stream means its coordinator has exited: nothing to reconnect to.
    if (state === 'reconnecting' && view.end) stopFollowing();
    else view.connection = state;
    mark(['header']);
  },
});
refreshDownloads();

// Ages ("0.4 s ago") and elapsed time move without events.
setInterval(() => mark(['header', 'workers']), 1000);
document.addEventListener('visibilitychange', () => mark(ALL));
const resized = new ResizeObserver(() => mark(['charts']));
for (const host of [hosts.loss, hosts.lr, hosts.throughput]) resized.observe(host);
