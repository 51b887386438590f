// The dashboard page: lays out its panels from one array, folds the
// coordinator's event stream into a RunView, and redraws the panels that an
// event (or the clock, the connection, the disk, a resize) touched, at most
// once per frame.
import './style.css';
import type { RunEvent } from '@lorafleet/run-events';
import { fetchDownloads, followEvents } from './api.js';
import { buildPage } from './page.js';
import type { Panel, Touch } from './panel.js';
import { RunView } from './run.js';
import {
  ktoPanel,
  lossPanel,
  lrPanel,
  rewardsPanel,
  throughputPanel,
  tokenAccuracyPanel,
} from './views/charts.js';
import { checkpointsPanel } from './views/checkpoints.js';
import { logPanel } from './views/event-log.js';
import { headerPanel, tilesPanel } from './views/overview.js';
import { factsPanel } from './views/run-facts.js';
import { ringPanel, workersPanel } from './views/workers.js';

/** The page, in order: a new panel is one entry here. */
const PANELS: readonly Panel[] = [
  headerPanel,
  tilesPanel,
  lossPanel,
  factsPanel,
  tokenAccuracyPanel,
  rewardsPanel,
  ktoPanel,
  lrPanel,
  throughputPanel,
  ringPanel,
  workersPanel,
  logPanel,
  checkpointsPanel,
];

const hosts = buildPage(document.body, PANELS);
const hostOf = (panel: Panel): HTMLElement => hosts.get(panel.id)!;

let view = new RunView();
const dirty = new Set<Panel>(PANELS);
let frame = 0;

function mark(changes: Iterable<Touch>): void {
  const changed = new Set(changes);
  for (const panel of PANELS) if (panel.touches.some((t) => changed.has(t))) dirty.add(panel);
  schedule();
}

function markAll(): void {
  for (const panel of PANELS) dirty.add(panel);
  schedule();
}

function schedule(): void {
  if (frame === 0 && dirty.size > 0 && !document.hidden) frame = requestAnimationFrame(render);
}

function render(): void {
  frame = 0;
  for (const panel of dirty) panel.render(hostOf(panel), view);
  dirty.clear();
  const loss = view.trainLoss.at(-1)?.[1];
  document.title = view.facts
    ? `${view.step}/${view.facts.steps} · loss ${loss?.toFixed(3) ?? '–'} · LoRA Fleet`
    : 'LoRA Fleet';
}

let downloadsTimer: ReturnType<typeof setTimeout> | undefined;
/** The run has ended and its coordinator has exited: nothing more to ask it. */
let coordinatorGone = false;
/** Which adapters are on disk changes with checkpoints (and pruning) and at the end. */
function refreshDownloads(): void {
  clearTimeout(downloadsTimer);
  downloadsTimer = setTimeout(() => {
    if (coordinatorGone) return;
    fetchDownloads().then(
      (downloads) => {
        view.downloads = downloads;
        mark(['downloads']);
      },
      () => undefined,
    );
  }, 300);
}

const ON_DISK: readonly RunEvent['type'][] = ['checkpoint', 'end', 'run'];

const stopFollowing = followEvents({
  onReset() {
    view = new RunView();
    view.connection = 'live';
    markAll();
  },
  onEvents(events) {
    for (const event of events) view.apply(event);
    mark(events.map((e) => e.type));
    if (events.some((e) => ON_DISK.includes(e.type))) refreshDownloads();
  },
  onConnection(state) {
    // After the run's end, a dropped stream means its coordinator has exited: nothing to reconnect to.
    if (state === 'reconnecting' && view.end) {
      coordinatorGone = true;
      stopFollowing();
    } else view.connection = state;
    mark(['connection']);
  },
});
refreshDownloads();

setInterval(() => mark(['clock']), 1000);
document.addEventListener('visibilitychange', markAll);
const resized = new ResizeObserver((entries) => {
  const ids = new Set(entries.map((e) => e.target.id));
  for (const panel of PANELS) {
    if (ids.has(panel.id) && panel.touches.includes('resize')) dirty.add(panel);
  }
  schedule();
});
for (const panel of PANELS) if (panel.touches.includes('resize')) resized.observe(hostOf(panel));
