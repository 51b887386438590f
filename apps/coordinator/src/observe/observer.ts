// A training run's observers: its event log (OUT/events.jsonl), with
// --dashboard HOST:PORT the dashboard server that shows it live, and with
// --report-to tensorboard an event file of its metrics (OUT/runs/).
import { join } from 'node:path';
import type { TrainOptions } from '../training/train-spec.js';
import { startDashboard } from '../dashboard/server.js';
import { type RunEventInit, RunEventLog, type RunFacts } from './events.js';
import { TensorBoardWriter } from './tensorboard.js';

/** How long the dashboard stays up after the run's last event. */
const DASHBOARD_LINGER_MS = 1000;

export interface RunObserver {
  readonly events: RunEventLog;
  emit(event: RunEventInit): void;
  /** A metrics.jsonl line, once written (--report-to tensorboard copies it to OUT/runs/). */
  metrics(line: Readonly<Record<string, unknown>>): void;
  /** A line for the event log (joins, leaves, checkpoints, errors). */
  note(level: 'info' | 'warn' | 'error', message: string): void;
  close(): Promise<void>;
}

/** Opens the run's event log (keeping an earlier invocation's when resuming) and starts the dashboard if asked. */
export async function observeRun(
  o: TrainOptions,
  out: string,
  resumed: boolean,
): Promise<RunObserver> {
  const events = RunEventLog.create(out, resumed);
  const listen = o.noDashboard ? undefined : o.dashboard;
  let dashboard: Awaited<ReturnType<typeof startDashboard>> | undefined;
  if (listen !== undefined) {
    const token = o.dashboardToken;
    dashboard = await startDashboard({
      events,
      listen,
      runDir: out,
      log: (line) => console.error(line),
      ...(token !== undefined ? { token } : {}),
    });
    console.log(`dashboard: ${dashboard.url}`);
  }
  const tensorBoard =
    o.reportTo === 'tensorboard' ? new TensorBoardWriter(join(out, 'runs')) : null;
  if (tensorBoard)
    console.log(`tensorboard: ${tensorBoard.file} (tensorboard --logdir ${join(out, 'runs')})`);
  return {
    events,
    emit: (event) => events.emit(event),
    metrics: (line) => tensorBoard?.line(line),
    note: (level, message) => events.emit({ type: 'log', level, message }),
    close: async () => {
      if (!dashboard) return;
      // The page fetches the final checkpoint list when it sees the run end: give it a moment.
      await new Promise((resolve) => setTimeout(resolve, DASHBOARD_LINGER_MS));
      await dashboard.close();
    },
  };
}

/**
 * Bytes each worker sends per step in a ring all-reduce of `parameters`
 * float32 gradients over `workers` ranks: 2 (N-1)/N x 4 bytes each.
 */
/** Bytes one worker sends per step: 2 (N-1)/N x bytes per element (4: fp32, 2: bf16/fp16) x parameters. */
export function ringBytesPerStep(parameters: number, workers: number, elementBytes = 4): number {
  return workers <= 1 ? 0 : Math.round((2 * (workers - 1) * elementBytes * parameters) / workers);
}

/** The facts with the wire's bytes per step, for gradients of `elementBytes` each (`--wire-dtype`). */
export function runFacts(
  f: Omit<RunFacts, 'wireBytesPerStep' | 'fullFinetuneWireBytesPerStep'>,
  elementBytes = 4,
): RunFacts {
  // At least two ranks, so a one-process run still shows what N would move per worker.
  const n = Math.max(2, f.workers);
  return {
    ...f,
    wireBytesPerStep: ringBytesPerStep(f.trainableParameters, n, elementBytes),
    fullFinetuneWireBytesPerStep: ringBytesPerStep(f.totalParameters, n, elementBytes),
  };
}
