// One spawned `lorafleet-worker` process: its output forwarded with a rank
// prefix, the last lines kept for error messages, and its exit recorded.
import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { BackendName } from '@lorafleet/core';
import { WORKER_EXIT, WORKER_LOG_PREFIX } from '@lorafleet/worker';

const TAIL_LINES = 20;

/** apps/worker's bin script, found through the workspace dependency. */
export function workerBin(): string {
  const manifest = createRequire(import.meta.url).resolve('@lorafleet/worker-daemon/package.json');
  return join(dirname(manifest), 'bin', 'lorafleet-worker.js');
}

/** How to start one worker beyond its rank, endpoint and backend. */
export interface WorkerProcessOptions {
  /** GPU backends: the GPU this worker uses (`lorafleet-worker --gpu I`). */
  gpu?: number;
  /** Seconds of coordinator silence after which the worker gives up (`--timeout`). */
  timeoutSeconds?: number;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class WorkerProcess {
  readonly child: ChildProcess;
  private readonly tail: string[] = [];
  exit: Exit | undefined;

  constructor(
    readonly rank: number,
    coordinator: string,
    readonly backend: BackendName,
    onExit: (worker: WorkerProcess) => void,
    forward: (line: string) => void,
    options: WorkerProcessOptions = {},
  ) {
    const args = [workerBin(), '--coordinator', coordinator, '--backend', backend];
    if (options.gpu !== undefined) args.push('--gpu', String(options.gpu));
    if (options.timeoutSeconds !== undefined)
      args.push('--timeout', String(options.timeoutSeconds));
    // detached: its own process group, so a Ctrl-C meant for the coordinator
    // does not kill the workers mid-step; the coordinator finishes the step,
    // saves, and shuts them down. Orphans exit on the coordinator's silence.
    this.child = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    for (const stream of [this.child.stdout, this.child.stderr]) {
      let partial = '';
      stream?.setEncoding('utf8').on('data', (text: string) => {
        const lines = (partial + text).split('\n');
        partial = lines.pop()!;
        for (const line of lines) this.line(line, forward);
      });
      stream?.on('end', () => partial && this.line(partial, forward));
    }
    // 'close', not 'exit': after the pipes are drained, so the tail holds its last words.
    this.child.on('close', (code, signal) => {
      this.exit = { code, signal };
      onExit(this);
    });
    this.child.on('error', (error) => {
      this.exit ??= { code: null, signal: null };
      this.tail.push(`cannot start: ${error.message}`);
      onExit(this);
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** "rank 1 (pid 4242)" */
  get name(): string {
    return `worker rank ${this.rank} (pid ${this.pid})`;
  }

  /** The last lines it printed, for an error message. */
  lastWords(): string {
    return this.tail.length > 0 ? `; its last output:\n  ${this.tail.join('\n  ')}` : '';
  }

  describeExit(): string {
    const e = this.exit;
    if (!e) return `${this.name} is running`;
    return `${this.name} exited with ${e.signal ? `signal ${e.signal}` : `code ${e.code}`}`;
  }

  /** Whether its backend could not start: a replacement in its slot (its GPU) would fail alike. */
  get backendUnavailable(): boolean {
    return this.exit?.code === WORKER_EXIT.backend;
  }

  /**
   * Why it ended, for a lost worker: a worker whose backend cannot start says
   * why in its last line; any other end is the exit and the last output.
   */
  lossReason(): string {
    const said = this.tail.findLast((line) => line.startsWith(WORKER_LOG_PREFIX));
    if (this.backendUnavailable && said) {
      return `cannot compute on ${this.backend}: ${said.slice(WORKER_LOG_PREFIX.length)}`;
    }
    return `${this.describeExit()}${this.lastWords()}`;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (!this.exit) this.child.kill(signal);
  }

  private line(line: string, forward: (line: string) => void): void {
    this.tail.push(line);
    if (this.tail.length > TAIL_LINES) this.tail.shift();
    forward(`[rank ${this.rank}] ${line}`);
  }
}
