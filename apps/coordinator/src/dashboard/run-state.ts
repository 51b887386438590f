// The run as of its latest event: what /api/state returns and /metrics reads.
// The browser keeps the full series; this keeps only the latest of each.
import type { RunEvent, RunEventLog, RunFacts, WorkerInfo } from '../observe/events.js';

type Of<T extends RunEvent['type']> = Extract<RunEvent, { type: T }>;

export interface RunState {
  facts: RunFacts | null;
  /** Time of the first event, epoch ms. */
  startedMs: number | null;
  lastStep: Omit<Of<'step'>, 'type'> | null;
  /** Step events seen (a resumed run counts both invocations). */
  stepEvents: number;
  /** Tokens trained on, summed over step events. */
  tokens: number;
  /** The latest held-out evaluation; a preference run's carries its reward accuracy. */
  lastEval: {
    step: number;
    loss: number;
    rewardAccuracy?: number;
    meanTokenAccuracy?: number;
  } | null;
  generation: number;
  workers: WorkerInfo[];
  checkpoints: { step: number; path: string; time: number }[];
  logCounts: { info: number; warn: number; error: number };
  end: Omit<Of<'end'>, 'type'> | null;
  events: number;
}

export function emptyRunState(): RunState {
  return {
    facts: null,
    startedMs: null,
    lastStep: null,
    stepEvents: 0,
    tokens: 0,
    lastEval: null,
    generation: 0,
    workers: [],
    checkpoints: [],
    logCounts: { info: 0, warn: 0, error: 0 },
    end: null,
    events: 0,
  };
}

export function applyEvent(state: RunState, event: RunEvent): void {
  state.events++;
  state.startedMs ??= event.time;
  switch (event.type) {
    case 'run':
      state.facts = event.facts;
      state.end = null; // a resumed run goes on
      break;
    case 'step': {
      const { type: _, ...step } = event;
      state.lastStep = step;
      state.stepEvents++;
      state.tokens += event.tokens;
      break;
    }
    case 'eval':
      state.lastEval = {
        step: event.step,
        loss: event.loss,
        ...(event.rewardAccuracy !== undefined ? { rewardAccuracy: event.rewardAccuracy } : {}),
        ...(event.meanTokenAccuracy !== undefined
          ? { meanTokenAccuracy: event.meanTokenAccuracy }
          : {}),
      };
      break;
    case 'workers':
      state.generation = event.generation;
      state.workers = event.workers;
      break;
    case 'checkpoint':
      state.checkpoints.push({ step: event.step, path: event.path, time: event.time });
      break;
    case 'log':
      state.logCounts[event.level]++;
      break;
    case 'end': {
      const { type: _, ...end } = event;
      state.end = end;
      break;
    }
  }
}

/** A state that follows `events` (history now, then live) until `stop()`. */
export function followRunState(events: RunEventLog): { state: RunState; stop: () => void } {
  const state = emptyRunState();
  for (const event of events.history()) applyEvent(state, event);
  const stop = events.subscribe((event) => applyEvent(state, event));
  return { state, stop };
}

/** Whether a worker is in the ring (ready or training), not starting, lost or gone. */
export function isLive(worker: WorkerInfo): boolean {
  return worker.status === 'ready' || worker.status === 'training';
}
