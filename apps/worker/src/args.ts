// The daemon's options, from one spec (@lorafleet/options, as every lorafleet
// command): flags first, then LORAFLEET_* environment variables, then defaults.
import { BACKENDS, type BackendName, GPU_BACKENDS } from '@lorafleet/core';
import { WIRE_DTYPE_NAMES, type WireDtypeName } from '@lorafleet/worker';
import { LAUNCHERS, LaunchError, type Placement, resolvePlacement } from '@lorafleet/launch';
import { UsageError, defineCommand, helpText, parseCommand } from '@lorafleet/options';

/** The daemon's options: flags, then LORAFLEET_* variables (handy under a process manager), then defaults. */
export const daemonSpec = defineCommand({
  name: 'lorafleet-worker',
  usage: 'lorafleet-worker',
  summary: [
    'Joins a `lorafleet train --workers N` (or `--listen URL --expect N`, or `--launcher`) run:',
    'loads the base model and data the coordinator names, trains its share of every step and',
    'all-reduces the LoRA gradients with the other workers. Exits 0 when the coordinator shuts',
    'the run down (with --rejoin: never; it joins again), 1 on a failure, 2 on bad flags, 3',
    'when its compute backend cannot start here (e.g. no WebGPU adapter), saying why, and 143',
    '(SIGTERM) or 130 (SIGINT) when signalled while not in a run (--rejoin: or twice in one).',
  ].join('\n'),
  options: {
    'list-gpus': {
      kind: 'boolean',
      description:
        "print the WebGPU adapters this worker can open (the index --gpu takes, Dawn's order) and " +
        'how those that share a name are told apart, then exit',
    },
    coordinator: {
      kind: 'string',
      value: 'URL',
      env: 'LORAFLEET_COORDINATOR',
      description: "the coordinator's control endpoint, tcp://HOST:PORT",
    },
    launcher: {
      kind: 'string',
      value: 'NAME',
      choices: LAUNCHERS,
      default: 'none',
      env: 'LORAFLEET_LAUNCHER',
      description:
        "take the coordinator's address, and the GPU (the local rank), from a cluster launcher's " +
        'variables: slurm (SLURM_PROCID, ... SLURM_STEP_NODELIST), k8s (JOB_COMPLETION_INDEX with ' +
        "LORAFLEET_COORDINATOR_HOST), env (torchrun's MASTER_ADDR/MASTER_PORT, or OpenMPI's), auto; " +
        "the ring then listens on this host's address toward the coordinator, and --timeout defaults " +
        "to 5 s, the coordinator's default heartbeat timeout",
    },
    backend: {
      kind: 'string',
      value: 'NAME',
      choices: BACKENDS,
      default: 'wasm',
      env: 'LORAFLEET_BACKEND',
      description: 'compute backend',
    },
    gpu: {
      kind: 'string',
      value: 'INDEX',
      env: 'LORAFLEET_GPU',
      description:
        "GPU backends: which GPU (webgpu: adapter index in Dawn's list; tensorflow-gpu: CUDA device; " +
        'default: the first, or the local rank under --launcher)',
    },
    timeout: {
      kind: 'number',
      value: 'SECONDS',
      min: 0.001,
      env: 'LORAFLEET_TIMEOUT',
      description:
        'give up after this long without a word from the coordinator (default 60, with --launcher 5)',
    },
    'join-timeout': {
      kind: 'number',
      value: 'SECONDS',
      min: 0.001,
      env: 'LORAFLEET_JOIN_TIMEOUT',
      description:
        'how long to wait for the coordinator to admit this worker (default --timeout, with --launcher 120)',
    },
    rejoin: {
      kind: 'boolean',
      env: 'LORAFLEET_REJOIN',
      description:
        'after a run ends or its coordinator goes silent, say Hello again and join the next run or ' +
        'the restarted coordinator (`train --resume`); SIGINT/SIGTERM stops it at once between runs, ' +
        'after the run during one (a second signal: at once)',
    },
    'on-sigterm': {
      kind: 'string',
      choices: ['wait', 'exit'],
      env: 'LORAFLEET_ON_SIGTERM',
      description:
        'on SIGTERM: wait for the coordinator, which finishes the step, saves a checkpoint and shuts ' +
        'this worker down (the default under --launcher, where the engine signals every task at once; ' +
        'before it joined a run, it exits at once), or exit at once (the default otherwise)',
    },
    'ring-host': {
      kind: 'string',
      value: 'HOST',
      env: 'LORAFLEET_RING_HOST',
      description: 'address the ring socket listens on and advertises (default 127.0.0.1)',
    },
    'curve-key': {
      kind: 'string',
      value: 'FILE',
      env: 'LORAFLEET_CURVE_KEY',
      description:
        "this worker's CURVE key pair (`lorafleet keys` makes one); with --server-key, encrypts and " +
        'authenticates the control and ring traffic',
    },
    'server-key': {
      kind: 'string',
      value: 'KEY',
      env: 'LORAFLEET_SERVER_KEY',
      description:
        "the coordinator's CURVE public key: its .pub file or the 40-character key itself",
    },
    'wire-dtype': {
      kind: 'string',
      value: 'TYPE',
      choices: WIRE_DTYPE_NAMES,
      env: 'LORAFLEET_WIRE_DTYPE',
      description:
        'join only runs whose gradients travel in this type (`train --wire-dtype`); a run in another ' +
        'is refused with an error naming both (default: follow the run)',
    },
  },
});

export const HELP = helpText(daemonSpec);

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
  /** SIGTERM: 'wait' for the coordinator's shutdown (launched tasks), or 'exit' (the signal's default). */
  onSigterm: 'wait' | 'exit';
  /** CURVE: where this worker's key pair is and the coordinator's public key (file or key). */
  curve?: { keyFile: string; serverKey: string };
  /** Join only runs with this wire dtype; absent: follow the run's. */
  wireDtype?: WireDtypeName;
}

export { UsageError };

/** The options, 'help' or 'list-gpus'; throws UsageError naming the bad flag. */
export function parseDaemonArgs(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): DaemonOptions | 'help' | 'list-gpus' {
  const o = parseCommand(daemonSpec, argv, env);
  if (o === 'help') return 'help';
  if (o.listGpus) return 'list-gpus';
  let placement: Placement | undefined;
  try {
    placement = resolvePlacement(o.launcher, env);
  } catch (error) {
    if (error instanceof LaunchError) throw new UsageError(error.message);
    throw error;
  }
  const placed = placement && `tcp://${placement.coordinator.host}:${placement.coordinator.port}`;
  const coordinator = o.coordinator ?? placed;
  if (!coordinator) {
    throw new UsageError(
      '--coordinator (or LORAFLEET_COORDINATOR) is required: the tcp://HOST:PORT the coordinator listens on ' +
        '(or --launcher, to read it from a cluster launcher)',
    );
  }
  if (!/^tcp:\/\/[^:/]+:\d+$/.test(coordinator)) {
    throw new UsageError(`--coordinator ${coordinator}: expected tcp://HOST:PORT`);
  }
  const gpu = gpuOf(o.gpu, o.backend, placement);
  const timeout = o.timeout ?? (placement ? 5 : 60);
  const joinTimeout = o.joinTimeout ?? (placement ? 120 : timeout);
  const [keyFile, serverKey] = [o.curveKey, o.serverKey];
  if ((keyFile === undefined) !== (serverKey === undefined)) {
    throw new UsageError(
      `${keyFile ? '--curve-key' : '--server-key'} needs ${keyFile ? '--server-key' : '--curve-key'}: ` +
        "CURVE takes this worker's key pair (--curve-key FILE) and the coordinator's public key " +
        '(--server-key FILE|KEY), or neither',
    );
  }
  return {
    coordinator,
    backend: o.backend,
    ...(o.wireDtype !== undefined ? { wireDtype: o.wireDtype } : {}),
    ...(gpu !== undefined ? { gpu } : {}),
    timeoutMs: timeout * 1000,
    ...(joinTimeout !== timeout && { joinTimeoutMs: joinTimeout * 1000 }),
    ...ringHostOf(o.ringHost, placement),
    ...(placement && { placement }),
    rejoin: o.rejoin,
    onSigterm: o.onSigterm ?? (placement ? 'wait' : 'exit'),
    ...(keyFile && serverKey && { curve: { keyFile, serverKey } }),
  };
}

/** --gpu I on a GPU backend; under a launcher, one task per GPU: the local rank picks it. */
function gpuOf(
  text: string | undefined,
  backend: BackendName,
  placement: Placement | undefined,
): number | undefined {
  if (text !== undefined && !/^\d+$/.test(text.trim())) {
    throw new UsageError(`--gpu ${text}: expected a GPU index (0, 1, ...)`);
  }
  const onGpu = GPU_BACKENDS.includes(backend);
  const gpu = text === undefined ? (onGpu ? placement?.localRank : undefined) : Number(text);
  if (gpu !== undefined && !onGpu) {
    throw new UsageError(
      `--gpu needs a GPU backend (--backend ${GPU_BACKENDS.join(' or ')}), not ${backend}`,
    );
  }
  return gpu;
}

/** --ring-host, else 127.0.0.1 on one machine; under a launcher, found at start (absent here). */
function ringHostOf(
  given: string | undefined,
  placement: Placement | undefined,
): { ringHost?: string } {
  if (given !== undefined) return { ringHost: given };
  return placement ? {} : { ringHost: '127.0.0.1' };
}
