// A fleet of one: `lorafleet train` without --workers/--listen runs the very
// worker that `lorafleet-worker` runs (Hello, Welcome, replica, StepPlan ...),
// in this process, over loopback. One process is then N workers with N = 1:
// one training loop, one checkpoint path, one summary. It cannot be silent
// apart from the coordinator (they share one event loop), so its liveness is
// its promise: it is lost when runWorker fails.
import type { BackendName } from '@lorafleet/core';
import { runWorker } from '@lorafleet/worker';

/** Coordinator silence the in-process worker tolerates: it never waits on another process. */
const NEVER_SILENT_MS = 7 * 24 * 3600 * 1000;

export class InProcessWorker {
  /** Settles when the worker leaves: after Shutdown, or with its failure. */
  readonly done: Promise<void>;
  failure: Error | undefined;
  finished = false;

  constructor(coordinator: string, backend: BackendName, onEnd: (w: InProcessWorker) => void) {
    this.done = runWorker({
      coordinator,
      backend,
      timeoutMs: NEVER_SILENT_MS,
      ringHost: '127.0.0.1',
      log: (line) => console.error(`[worker] ${line}`),
    }).then(
      () => {
        this.finished = true;
        onEnd(this);
      },
      (error: unknown) => {
        this.finished = true;
        this.failure = error instanceof Error ? error : new Error(String(error));
        onEnd(this);
      },
    );
  }

  get pid(): number {
    return process.pid;
  }

  describeEnd(): string {
    return this.failure ? `the in-process worker failed: ${this.failure.message}` : 'left';
  }
}
