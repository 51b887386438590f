// The daemon's options: flags first, then LORAFLEET_* environment variables
// (handy under a process manager), then defaults.
import { parseArgs } from 'node:util';
import { BACKENDS, type BackendName, GPU_BACKENDS } from '@lorafleet/core';
import { WIRE_DTYPE_NAMES, type WireDtypeName } from '@lorafleet/worker';

export const HELP = `usage: lorafleet-worker --coordinator tcp://HOST:PORT [options]

Joins a \`lorafleet train --workers N\` (or \`--listen URL --expect N\`) run:
loads the base model and data the coordinator names, trains its share of every
step and all-reduces the LoRA gradients with the other workers. Exits 0 when
the coordinator shuts the run down (with --rejoin: never; it joins again).

options:
  --coordinator URL   the coordinator's control endpoint (env LORAFLEET_COORDINATOR)
  --backend NAME      compute backend: ${BACKENDS.join(', ')} (env LORAFLEET_BACKEND; default wasm)
  --gpu INDEX         GPU backends: which GPU (webgpu: adapter index in Dawn's list;
                      tensorflow-gpu: CUDA device) (env LORAFLEET_GPU; default: the first)
  --timeout SECONDS   give up after this long without a word from the coordinator
                      (env LORAFLEET_TIMEOUT; default 60)
  --rejoin            after a run ends or its coordinator goes silent, say Hello
                      again and join the next run or the restarted coordinator
                      (\`train --resume\`); stop with SIGINT/SIGTERM (env LORAFLEET_REJOIN=1)
  --ring-host HOST    address the ring socket listens on and advertises
                      (env LORAFLEET_RING_HOST; default 127.0.0.1)
  --curve-key FILE    this worker's CURVE key pair (\`lorafleet keys\` makes one); with
                      --server-key, encrypts and authenticates the control and ring
                      traffic (env LORAFLEET_CURVE_KEY)
  --server-key KEY    the coordinator's CURVE public key: its .pub file or the
                      40-character key itself (env LORAFLEET_SERVER_KEY)
  --wire-dtype TYPE   ${WIRE_DTYPE_NAMES.join(', ')}: join only runs whose gradients travel in
                      this type (\`train --wire-dtype\`); a run in another is refused with an
                      error naming both (env LORAFLEET_WIRE_DTYPE; default: follow the run)
  -h, --help          this text`;

export interface DaemonOptions {
  coordinator: string;
  backend: BackendName;
  /** GPU backends: the GPU index (`--gpu`); absent: the backend's default GPU. */
  gpu?: number;
  timeoutMs: number;
  ringHost: string;
  /** Join again after each run or coordinator loss, until stopped. */
  rejoin: boolean;
  /** CURVE: where this worker's key pair is and the coordinator's public key (file or key). */
  curve?: { keyFile: string; serverKey: string };
  /** Join only runs with this wire dtype; absent: follow the run's. */
  wireDtype?: WireDtypeName;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

/** The options, or 'help'; throws UsageError naming the bad flag. */
export function parseDaemonArgs(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): DaemonOptions | 'help' {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        coordinator: { type: 'string' },
        backend: { type: 'string' },
        gpu: { type: 'string' },
        timeout: { type: 'string' },
        'ring-host': { type: 'string' },
        'curve-key': { type: 'string' },
        'server-key': { type: 'string' },
        'wire-dtype': { type: 'string' },
        rejoin: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new UsageError(`${(error as Error).message}; see --help`);
  }
  if (values.help) return 'help';
  const pick = (flag: string, variable: string): string | undefined =>
    (values[flag] as string | undefined) ?? (env[variable] || undefined);
  const coordinator = pick('coordinator', 'LORAFLEET_COORDINATOR');
  if (!coordinator) {
    throw new UsageError(
      '--coordinator (or LORAFLEET_COORDINATOR) is required: the tcp://HOST:PORT the coordinator listens on',
    );
  }
  if (!/^tcp:\/\/[^:/]+:\d+$/.test(coordinator)) {
    throw new UsageError(`--coordinator ${coordinator}: expected tcp://HOST:PORT`);
  }
  const backend = pick('backend', 'LORAFLEET_BACKEND') ?? 'wasm';
  if (!BACKENDS.includes(backend as BackendName)) {
    throw new UsageError(`--backend ${backend}: choose one of ${BACKENDS.join(', ')}`);
  }
  const gpuText = pick('gpu', 'LORAFLEET_GPU');
  if (gpuText !== undefined && !/^\d+$/.test(gpuText.trim())) {
    throw new UsageError(`--gpu ${gpuText}: expected a GPU index (0, 1, ...)`);
  }
  const gpu = gpuText === undefined ? undefined : Number(gpuText);
  if (gpu !== undefined && !GPU_BACKENDS.includes(backend as BackendName)) {
    throw new UsageError(
      `--gpu needs a GPU backend (--backend ${GPU_BACKENDS.join(' or ')}), not ${backend}`,
    );
  }
  const timeout = Number(pick('timeout', 'LORAFLEET_TIMEOUT') ?? 60);
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new UsageError(`--timeout must be a positive number of seconds`);
  }
  const keyFile = pick('curve-key', 'LORAFLEET_CURVE_KEY');
  const serverKey = pick('server-key', 'LORAFLEET_SERVER_KEY');
  if ((keyFile === undefined) !== (serverKey === undefined)) {
    throw new UsageError(
      `${keyFile ? '--curve-key' : '--server-key'} needs ${keyFile ? '--server-key' : '--curve-key'}: ` +
        "CURVE takes this worker's key pair (--curve-key FILE) and the coordinator's public key " +
        '(--server-key FILE|KEY), or neither',
    );
  }
  const wireDtype = pick('wire-dtype', 'LORAFLEET_WIRE_DTYPE');
  if (wireDtype !== undefined && !WIRE_DTYPE_NAMES.includes(wireDtype as WireDtypeName)) {
    throw new UsageError(`--wire-dtype ${wireDtype}: choose one of ${WIRE_DTYPE_NAMES.join(', ')}`);
  }
  return {
    coordinator,
    backend: backend as BackendName,
    ...(wireDtype !== undefined ? { wireDtype: wireDtype as WireDtypeName } : {}),
    ...(gpu !== undefined ? { gpu } : {}),
    timeoutMs: timeout * 1000,
    ringHost: pick('ring-host', 'LORAFLEET_RING_HOST') ?? '127.0.0.1',
    rejoin: values.rejoin === true || env.LORAFLEET_REJOIN === '1',
    ...(keyFile && serverKey && { curve: { keyFile, serverKey } }),
  };
}
