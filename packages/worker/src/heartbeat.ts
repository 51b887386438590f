// A worker's heartbeats come from a thread of their own (heartbeat-thread.ts),
// so liveness does not depend on compute: a micro-batch blocks the main
// thread's event loop for seconds, but not this thread's. What the main thread
// does is shared with it through ComputeProgress; a computation that stops
// making progress while the thread beats on is a hang the coordinator finds
// with --step-timeout, and a process that stops altogether goes silent.
import { Worker } from 'node:worker_threads';
import type { LinkCurve } from './coordinator-link.js';
import type { ComputeProgress } from './progress.js';

/** What the thread is started with (its workerData). */
export interface HeartbeatThreadData {
  /** The coordinator's ROUTER, as the main link connects to it. */
  endpoint: string;
  runId: string;
  /** The Hello's heartbeatId: how the coordinator knows whose heartbeat this is. */
  heartbeatId: string;
  intervalMs: number;
  /** ComputeProgress's shared memory. */
  buffer: SharedArrayBuffer;
  /** The main link's CURVE keys: the heartbeat socket is authenticated like it. */
  curve: LinkCurve | undefined;
}

/** 'beat': one heartbeat now; 'stop': close the socket and end. */
export type HeartbeatCommand = 'beat' | 'stop';

/** How long close() waits for the thread to end before terminating it. */
const STOP_TIMEOUT_MS = 2000;

export class HeartbeatThread {
  private readonly thread: Worker;
  private readonly exited: Promise<void>;

  constructor(
    options: Omit<HeartbeatThreadData, 'buffer'>,
    progress: ComputeProgress,
    log: (line: string) => void,
  ) {
    const workerData: HeartbeatThreadData = { ...options, buffer: progress.buffer };
    // Not the parent's flags: under vitest they hold `--conditions source`,
    // which would send the thread's imports to TypeScript sources.
    this.thread = new Worker(threadEntry(), { workerData, execArgv: [] });
    this.exited = new Promise((resolve) => this.thread.once('exit', () => resolve()));
    this.thread.on('error', (error) =>
      log(
        `the heartbeat thread failed: ${error.message}; the coordinator will take this worker ` +
          'for lost once its --heartbeat-timeout passes',
      ),
    );
    // The main thread's end is the process's end.
    this.thread.unref();
  }

  /** One heartbeat now (a worker that finished loading says "ready" at once). */
  beatNow(): void {
    this.thread.postMessage('beat' satisfies HeartbeatCommand);
  }

  async close(): Promise<void> {
    this.thread.postMessage('stop' satisfies HeartbeatCommand);
    const timer = setTimeout(() => void this.thread.terminate(), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * The thread runs built JavaScript: from dist/ next to this module, and from
 * the package's dist/ when this module runs as TypeScript source (vitest), so
 * tests need `pnpm run build` first, as `pnpm test` does.
 */
function threadEntry(): URL {
  return import.meta.url.endsWith('.ts')
    ? new URL('../dist/src/heartbeat-thread.js', import.meta.url)
    : new URL('./heartbeat-thread.js', import.meta.url);
}
