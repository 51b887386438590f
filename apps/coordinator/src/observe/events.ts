// What a training run tells its observers: one typed record per thing that
// happened, appended to OUT/events.jsonl (so a finished run can be replayed by
// `lorafleet dashboard --run DIR`) and handed to live subscribers (the
// dashboard's server-sent events, /metrics). The file is the contract: the
// dashboard reads the same records live and post mortem. Their types live in
// @lorafleet/run-events, which the dashboard imports too.
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RunEvent, RunEventInit } from '@lorafleet/run-events';

export type {
  RunEvent,
  RunEventInit,
  RunFacts,
  WorkerInfo,
  WorkerStatus,
} from '@lorafleet/run-events';

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
