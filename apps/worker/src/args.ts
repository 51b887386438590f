// The daemon's options: flags first, then LORAFLEET_* environment variables
// (handy under a process manager), then defaults.
import { parseArgs } from 'node:util';
import { BACKENDS, type BackendName, GPU_BACKENDS } from '@lorafleet/core';
import { WIRE_DTYPE_NAMES, type WireDtypeName } from '@lorafleet/worker';
import {
  LAUNCHERS,
  LaunchError,
  type Launcher,
  type Placement,
  resolvePlacement,
} from '@lorafleet/launch';

export const HELP = `usage: lorafleet-worker --coordinator tcp://HOST:PORT [options]
       lorafleet-worker --launcher auto|slurm|k8s|env [options]

Joins a \`lorafleet train --workers N\` (or \`--listen URL --expect N\`) run:
loads the base model and data the coordinator names, trains its share of every
step and all-reduces the LoRA gradients with the other workers. Exits 0 when
the coordinator shuts the run down (with --rejoin: never; it joins again).

options:
  --coordinator URL   the coordinator's control endpoint (env LORAFLEET_COORDINATOR)
  --launcher NAME     take the coordinator's address, and the GPU (the local rank), from
                      a cluster launcher's variables: auto, slurm (SLURM_PROCID, ...
                      SLURM_STEP_NODELIST), k8s (JOB_COMPLETION_INDEX with
                      LORAFLEET_COORDINATOR_HOST), env (torchrun's MASTER_ADDR/MASTER_PORT,
                      or OpenMPI's), none (env LORAFLEET_LAUNCHER; default none); the ring
                      then listens on this host's address toward the coordinator, and
                      --timeout defaults to 5 s, the coordinator's default heartbeat timeout
  --backend NAME      compute backend: ${BACKENDS.join(', ')} (env LORAFLEET_BACKEND; default wasm)
  --gpu INDEX         GPU backends: which GPU (webgpu: adapter index in Dawn's list;
                      tensorflow-gpu: CUDA device) (env LORAFLEET_GPU; default: the first)
  --timeout SECONDS   give up after this long without a word from the coordinator
                      (env LORAFLEET_TIMEOUT; default 60, with --launcher 5)
  --join-timeout SECONDS
                      how long to wait for the coordinator to admit this worker
                      (env LORAFLEET_JOIN_TIMEOUT; default --timeout, with --launcher 120)
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
  joinTimeoutMs?: number;
  /** Absent under a launcher: this host's address toward the coordinator (found at start). */
  ringHost?: string;
  /** Where the launcher placed this process (--launcher). */
  placement?: Placement;
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
        'join-timeout': { type: 'string' },
        launcher: { type: 'string' },
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
  const launcher = pick('launcher', 'LORAFLEET_LAUNCHER') ?? 'none';
  if (!LAUNCHERS.includes(launcher as Launcher)) {
    throw new UsageError(`--launcher ${launcher}: choose one of ${LAUNCHERS.join(', ')}`);
  }
  let placement: Placement | undefined;
  try {
    placement = resolvePlacement(launcher as Launcher, env);
  } catch (error) {
    if (error instanceof LaunchError) throw new UsageError(error.message);
    throw error;
  }
  const placed = placement && `tcp://${placement.coordinator.host}:${placement.coordinator.port}`;
  const coordinator = pick('coordinator', 'LORAFLEET_COORDINATOR') ?? placed;
  if (!coordinator) {
    throw new UsageError(
      '--coordinator (or LORAFLEET_COORDINATOR) is required: the tcp://HOST:PORT the coordinator listens on ' +
        '(or --launcher, to read it from a cluster launcher)',
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
  const onGpu = GPU_BACKENDS.includes(backend as BackendName);
  // Under a launcher, one task per GPU: the local rank picks it.
  const gpu = gpuText === undefined ? (onGpu ? placement?.localRank : undefined) : Number(gpuText);
  if (gpu !== undefined && !onGpu) {
    throw new UsageError(
      `--gpu needs a GPU backend (--backend ${GPU_BACKENDS.join(' or ')}), not ${backend}`,
    );
  }
  const seconds = (flag: string, variable: string, fallback: number): number => {
    const value = Number(pick(flag, variable) ?? fallback);
    if (!Number.isFinite(value) || value <= 0) {
      throw new UsageError(`--${flag} must be a positive number of seconds`);
    }
    return value;
  };
  const timeout = seconds('timeout', 'LORAFLEET_TIMEOUT', placement ? 5 : 60);
  const joinTimeout = seconds('join-timeout', 'LORAFLEET_JOIN_TIMEOUT', placement ? 120 : timeout);
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
    ...(joinTimeout !== timeout && { joinTimeoutMs: joinTimeout * 1000 }),
    ...ringHostOf(pick('ring-host', 'LORAFLEET_RING_HOST'), placement),
    ...(placement && { placement }),
    rejoin: values.rejoin === true || env.LORAFLEET_REJOIN === '1',
    ...(keyFile && serverKey && { curve: { keyFile, serverKey } }),
  };
}

/** --ring-host, else 127.0.0.1 on one machine; under a launcher, found at start (absent here). */
function ringHostOf(
  given: string | undefined,
  placement: Placement | undefined,
): { ringHost?: string } {
  if (given !== undefined) return { ringHost: given };
  return placement ? {} : { ringHost: '127.0.0.1' };
}
