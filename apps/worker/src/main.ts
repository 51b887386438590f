// `lorafleet-worker`: a thin shell over @lorafleet/worker's runWorker. Exit
// status (WORKER_EXIT): 0 after a clean shutdown, 1 on any failure, 2 on bad
// usage, 3 when the compute backend cannot start on this machine, 143 on
// SIGTERM before it joined a run; with --rejoin, 143 (SIGTERM) or 130
// (SIGINT) when signalled between runs or twice during one.
import { type CurveKeyPair, readKeyPair, resolvePublicKey } from '@lorafleet/collective';
import {
  builtDeviceLayer,
  describeAdapters,
  deviceName,
  listWebGpuAdapters,
  noAdapterError,
  settleBackend,
  useBackend,
} from '@lorafleet/core';
import { describePlacement, localAddressToward } from '@lorafleet/launch';
import {
  WORKER_EXIT,
  WORKER_LOG_PREFIX,
  type WorkerOptions,
  reportBackendFailure,
  runWorker,
  waitForCoordinatorOnSigterm,
} from '@lorafleet/worker';
import { type DaemonOptions, HELP, UsageError, parseDaemonArgs } from './args.js';

/** The CURVE keys the flags name, read before joining so that a bad file is a usage error. */
function loadCurve(curve: NonNullable<DaemonOptions['curve']>): {
  keyPair: CurveKeyPair;
  serverPublicKey: string;
} {
  const read = <T>(flag: string, load: () => T): T => {
    try {
      return load();
    } catch (error) {
      throw new UsageError(`${flag}: ${(error as Error).message}`);
    }
  };
  return {
    keyPair: read('--curve-key', () => readKeyPair(curve.keyFile)),
    serverPublicKey: read('--server-key', () => resolvePublicKey(curve.serverKey)),
  };
}

async function main(argv: string[]): Promise<number> {
  try {
    const options = parseDaemonArgs(argv);
    if (options === 'help') {
      console.log(HELP);
      return WORKER_EXIT.done;
    }
    if (options === 'list-gpus') return await listGpus();
    const { curve, rejoin, placement, ringHost, onSigterm, ...rest } = options;
    const log = (line: string) => console.error(`${WORKER_LOG_PREFIX}${line}`);
    if (placement) log(describePlacement(placement));
    const workerOptions: WorkerOptions = {
      ...rest,
      ringHost: ringHost ?? (await ringHostToward(options.coordinator)),
      ...(curve && { curve: loadCurve(curve) }),
      log,
    };
    // Open the compute backend (and its GPU) before joining: a worker that
    // cannot compute says why here, instead of failing after Welcome.
    try {
      await useBackend(options.backend, options.gpu === undefined ? {} : { gpu: options.gpu });
    } catch (error) {
      const reason = (error as Error).message;
      log(reason);
      // Launched: the engine would start this task the same way; the run cannot have it.
      if (placement) {
        await reportBackendFailure({
          coordinator: options.coordinator,
          rank: placement.rank,
          backend: options.backend,
          reason,
          timeoutMs: workerOptions.joinTimeoutMs ?? workerOptions.timeoutMs,
          log,
          ...(workerOptions.curve && { curve: workerOptions.curve }),
        });
      }
      return WORKER_EXIT.backend;
    }
    workerOptions.log(`computing on ${options.backend} (${deviceName()})`);
    if (!rejoin) {
      // Under a launcher the engine signals every task at once (rank 0's worker
      // too, which its coordinator's task starts with --on-sigterm wait): the
      // coordinator saves a checkpoint and then shuts this worker down.
      const sigterm = onSigterm === 'wait' ? waitForCoordinatorOnSigterm(log) : undefined;
      await runWorker({ ...workerOptions, ...(sigterm && { onWelcome: sigterm.onWelcome }) });
      return WORKER_EXIT.done;
    }
    return await rejoinForever(workerOptions);
  } catch (error) {
    const raw = (error as Error).message;
    const message = raw.startsWith(WORKER_LOG_PREFIX) ? raw.slice(WORKER_LOG_PREFIX.length) : raw;
    console.error(`${WORKER_LOG_PREFIX}${message}`);
    if (!(error instanceof UsageError) && process.env.LORAFLEET_DEBUG && error instanceof Error)
      console.error(error.stack);
    return error instanceof UsageError ? WORKER_EXIT.usage : WORKER_EXIT.failed;
  }
}

/** --list-gpus: Dawn's adapters, or why there is none (exit 3, as a backend that cannot start). */
async function listGpus(): Promise<number> {
  const list = await listWebGpuAdapters();
  if (list.length === 0) {
    console.error(`${WORKER_LOG_PREFIX}${noAdapterError([]).message}`);
    return WORKER_EXIT.backend;
  }
  console.log(describeAdapters(list, builtDeviceLayer()));
  return WORKER_EXIT.done;
}

/** This host's address on the route to the coordinator of `tcp://HOST:PORT`. */
async function ringHostToward(coordinator: string): Promise<string> {
  const [, host = '', port = '0'] = /^tcp:\/\/(.+):(\d+)$/.exec(coordinator) ?? [];
  try {
    return await localAddressToward(host, Number(port));
  } catch (error) {
    throw new UsageError(`${(error as Error).message}; give --ring-host ADDRESS`);
  }
}

/**
 * --rejoin: one run after another, and through coordinator restarts. A
 * failure is logged and retried after a pause that grows to 30 s. SIGINT or
 * SIGTERM during a run: stop when it ends (a second signal: at once);
 * between runs (waiting to join, or pausing): at once.
 */
async function rejoinForever(options: WorkerOptions): Promise<number> {
  let [stopping, inRun] = [false, false];
  const stop = (signal: NodeJS.Signals) => {
    if (inRun && !stopping) {
      stopping = true;
      return options.log(`stopping after this run (${signal}; a second signal exits now)`);
    }
    options.log(inRun ? `${signal} again: exiting now` : `${signal} while not in a run: exiting`);
    const code = signal === 'SIGINT' ? WORKER_EXIT.interrupted : WORKER_EXIT.terminated;
    void settleBackend()
      .catch(() => undefined)
      .finally(() => process.exit(code));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const joined = { ...options, onWelcome: () => (inRun = true) };
  let pause = 1000;
  while (!stopping) {
    try {
      await runWorker(joined);
      pause = 1000;
      if (!stopping) options.log('run finished; joining again');
    } catch (error) {
      inRun = false;
      if (stopping) throw error;
      options.log(`${(error as Error).message}; joining again in ${pause / 1000} s`);
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(30_000, pause * 2);
    }
    inRun = false;
  }
  return WORKER_EXIT.done;
}

// Exit explicitly: tfjs and ZeroMQ keep handles that would hold the process open.
// Device work still in flight at exit crashes Dawn (SIGSEGV on SwiftShader): let it finish first.
main(process.argv.slice(2)).then(
  async (code) => {
    await settleBackend().catch(() => undefined);
    process.exit(code);
  },
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
