// What a training run tells its observers: one typed record per thing that
// happened, appended to OUT/events.jsonl (so a finished run can be replayed by
// `lorafleet dashboard --run DIR`) and handed to live subscribers (the
// dashboard's server-sent events, /metrics). The file is the contract: the
// dashboard reads the same records live and post mortem.
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Facts of the run, known before the first step. */
export interface RunFacts {
  runId: string;
  model: string;
  /** 'lora' or 'full'. */
  mode: string;
  totalParameters: number;
  trainableParameters: number;
  lora: { r: number; alpha: number; dropout: number; targets: string[] } | null;
  backend: string;
  workers: number;
  steps: number;
  /** Rows per step and tokens per row. */
  batchSize: number;
  seqLen: number;
  /**
   * Bytes each worker sends per step in the ring all-reduce of the trainable
   * parameters' gradients, and what the same all-reduce of every parameter
   * (full fine-tuning) would send: 2 (N-1)/N x 4 bytes x parameters.
   */
  wireBytesPerStep: number;
  fullFinetuneWireBytesPerStep: number;
}

export type WorkerStatus = 'starting' | 'ready' | 'training' | 'lost' | 'left';

export interface WorkerInfo {
  rank: number;
  workerId: string;
  host: string;
  pid: number;
  device: string;
  backend: string;
  status: WorkerStatus;
  /** Epoch milliseconds of the last message from it (0: none yet). */
  lastHeartbeatMs: number;
  /** Resident memory of its process, bytes (0: unknown). */
  rssBytes: number;
  /** Its last step, split: compute, all-reduce, and waiting (the step's wall time minus both and the update). */
  computeMs: number;
  allReduceMs: number;
  waitMs: number;
  /** The rank it sends to in the ring (itself when alone). */
  ringNext: number;
}

export type RunEvent =
  | { type: 'run'; time: number; facts: RunFacts }
  | {
      type: 'step';
      time: number;
      step: number;
      epoch: number;
      loss: number;
      lr: number;
      tokens: number;
      tokensPerSecond: number;
      gradNorm: number;
      seconds: number;
    }
  | { type: 'eval'; time: number; step: number; loss: number }
  | { type: 'workers'; time: number; generation: number; workers: WorkerInfo[] }
  | { type: 'checkpoint'; time: number; step: number; path: string }
  | { type: 'log'; time: number; level: 'info' | 'warn' | 'error'; message: string }
  | { type: 'end'; time: number; status: 'finished' | 'interrupted' | 'failed'; message: string };

/** A RunEvent before it is stamped with the time. */
export type RunEventInit = RunEvent extends infer E
  ? E extends RunEvent
    ? Omit<E, 'time'> & { time?: number }
    : never
  : never;

export type Listener = (event: RunEvent) => void;

export const EVENTS_FILE = 'events.jsonl';

/**
 * The run's event log: appends each event to OUT/events.jsonl (synchronously,
 * so a crash loses nothing already emitted) and notifies subscribers.
 */
export class RunEventLog {
  private readonly events: RunEvent[] = [];
  private readonly listeners = new Set<Listener>();

  /** `path` undefined: in memory only (tests, replays). */
  private constructor(private readonly path: string | undefined) {}

  /** A new log for a run in `out`; `append` keeps the events of an earlier (resumed) invocation. */
  static create(out: string, append = false): RunEventLog {
    const path = join(out, EVENTS_FILE);
    if (!append) writeFileSync(path, '');
    const log = new RunEventLog(path);
    if (append) log.events.push(...readEvents(path, true));
    return log;
  }

  /** A finished run's events, read from its folder (for `lorafleet dashboard --run DIR`). */
  static replay(out: string): RunEventLog {
    const log = new RunEventLog(undefined);
    log.events.push(...readEvents(join(out, EVENTS_FILE), false));
    return log;
  }

  /** An in-memory log (nothing written). */
  static memory(): RunEventLog {
    return new RunEventLog(undefined);
  }

  emit(init: RunEventInit): void {
    const event = { ...init, time: init.time ?? Date.now() } as RunEvent;
    this.events.push(event);
    if (this.path) appendFileSync(this.path, JSON.stringify(event) + '\n');
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // An observer's failure must never stop training.
      }
    }
  }

  /** Everything emitted so far, oldest first. */
  history(): readonly RunEvent[] {
    return this.events;
  }

  /** Calls `listener` for every later event; returns the unsubscribe function. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** Parses an events.jsonl; a torn last line (crash mid-write) is ignored. */
export function readEvents(path: string, missingOk: boolean): RunEvent[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if (missingOk && (error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new Error(`cannot read ${path}: ${(error as Error).message}`);
  }
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const events: RunEvent[] = [];
  for (const [i, line] of lines.entries()) {
    try {
      events.push(JSON.parse(line) as RunEvent);
    } catch {
      if (i !== lines.length - 1) throw new Error(`${path}:${i + 1}: not a JSON event`);
    }
  }
  return events;
}
