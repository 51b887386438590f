// One command line on every task (SPMD, as under torchrun): each process
// learns its rank, the world size, its local rank and the coordinator's
// address from the variables its launcher sets. Flags the user gives beat
// the environment. Pure: the environment is passed in.
import { HostlistError, expandHostlist } from './hostlist.js';

export const LAUNCHERS = ['auto', 'slurm', 'k8s', 'env', 'none'] as const;
export type Launcher = (typeof LAUNCHERS)[number];

export type LaunchSource = 'torchrun' | 'slurm' | 'k8s' | 'openmpi' | 'flags';

/** torchrun's default rendezvous port (MASTER_PORT), kept so existing job scripts carry over. */
export const DEFAULT_PORT = 29500;

/** What a process is in the job. */
export interface Placement {
  source: LaunchSource;
  rank: number;
  worldSize: number;
  /** Rank among the tasks on this host: the default GPU. */
  localRank: number;
  /** Where rank 0's coordinator listens. */
  coordinator: { host: string; port: number };
  /** Stable across the engine's restarts of the job (requeue, backoff): a restart resumes it. */
  runId: string | undefined;
  restartCount: number;
}

/** Values given as flags (`--rank`, `--world-size`, ...): they beat the environment. */
export interface ExplicitPlacement {
  rank?: number;
  worldSize?: number;
  localRank?: number;
  coordinatorHost?: string;
  coordinatorPort?: number;
  runId?: string;
}

export type Environment = Readonly<Record<string, string | undefined>>;

export class LaunchError extends Error {
  override name = 'LaunchError';
}

/** What one source read; undefined fields are filled by flags, LORAFLEET_* or defaults. */
type Reading = Partial<Omit<Placement, 'source' | 'coordinator'>> & {
  host?: string;
  port?: number;
};

interface Source {
  /** Shown in errors: the variables that mark this source. */
  marks: string;
  /** Whether this launcher started us (its rank variable is set). */
  present: (env: Environment) => boolean;
  read: (env: Environment) => Reading;
  /** What the user must add when the source leaves the coordinator host or world size open. */
  missing?: string;
}

const SOURCES: Record<Exclude<LaunchSource, 'flags'>, Source> = {
  torchrun: {
    marks: 'RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT (torchrun)',
    present: (env) => env.RANK !== undefined,
    read: (env) => ({
      rank: int(env, 'RANK'),
      worldSize: int(env, 'WORLD_SIZE'),
      localRank: int(env, 'LOCAL_RANK'),
      host: env.MASTER_ADDR,
      port: int(env, 'MASTER_PORT'),
      runId: env.TORCHELASTIC_RUN_ID && `torchelastic-${env.TORCHELASTIC_RUN_ID}`,
      restartCount: int(env, 'TORCHELASTIC_RESTART_COUNT'),
    }),
  },
  slurm: {
    marks: 'SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_STEP_NODELIST (Slurm srun)',
    present: (env) => env.SLURM_PROCID !== undefined,
    read: (env) => {
      const jobId = int(env, 'SLURM_JOB_ID');
      const list = env.SLURM_STEP_NODELIST ?? env.SLURM_JOB_NODELIST ?? env.SLURM_NODELIST;
      return {
        rank: int(env, 'SLURM_PROCID'),
        worldSize: int(env, 'SLURM_NTASKS') ?? int(env, 'SLURM_NPROCS'),
        localRank: int(env, 'SLURM_LOCALID'),
        // Task 0 runs on the step's first node.
        host: list === undefined ? undefined : firstHost(list),
        // Two jobs sharing a node get different ports unless MASTER_PORT says otherwise.
        port: int(env, 'MASTER_PORT') ?? (jobId === undefined ? undefined : slurmPort(jobId)),
        runId: jobId === undefined ? undefined : `slurm-${jobId}`,
        restartCount: int(env, 'SLURM_RESTART_COUNT'),
      };
    },
  },
  k8s: {
    marks: 'JOB_COMPLETION_INDEX (Kubernetes Indexed Job)',
    present: (env) => env.JOB_COMPLETION_INDEX !== undefined,
    read: (env) => ({
      rank: int(env, 'JOB_COMPLETION_INDEX'),
      localRank: 0,
    }),
    missing:
      'an Indexed Job does not say the world size or the coordinator host: give --world-size and ' +
      '--coordinator-host JOB-0.SERVICE (or LORAFLEET_WORLD_SIZE and LORAFLEET_COORDINATOR_HOST)',
  },
  openmpi: {
    marks:
      'OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK (OpenMPI mpirun)',
    present: (env) => env.OMPI_COMM_WORLD_RANK !== undefined,
    read: (env) => ({
      rank: int(env, 'OMPI_COMM_WORLD_RANK'),
      worldSize: int(env, 'OMPI_COMM_WORLD_SIZE'),
      localRank: int(env, 'OMPI_COMM_WORLD_LOCAL_RANK'),
      host: env.MASTER_ADDR,
      port: int(env, 'MASTER_PORT'),
    }),
    missing: 'mpirun does not say where rank 0 runs: give --coordinator-host HOST (or MASTER_ADDR)',
  },
};

/** Which sources each --launcher reads, in order of precedence. */
export const LAUNCHER_SOURCES: Record<Launcher, readonly Exclude<LaunchSource, 'flags'>[]> = {
  auto: ['torchrun', 'slurm', 'k8s', 'openmpi'],
  slurm: ['slurm'],
  k8s: ['k8s'],
  env: ['torchrun', 'openmpi'],
  none: [],
};

/**
 * This process's placement under `launcher`, or undefined for `none` (a
 * plain run). Throws LaunchError naming the variables looked for when the
 * role cannot be told, or what is missing or malformed.
 */
export function resolvePlacement(
  launcher: Launcher,
  env: Environment,
  explicit: ExplicitPlacement = {},
): Placement | undefined {
  if (launcher === 'none') return undefined;
  const names = LAUNCHER_SOURCES[launcher];
  const found = names.find((name) => SOURCES[name].present(env));
  let reading: Reading = {};
  if (found !== undefined) reading = SOURCES[found].read(env);
  else if (explicit.rank === undefined || explicit.worldSize === undefined) {
    throw new LaunchError(
      `--launcher ${launcher}: cannot tell this process's rank; looked for ` +
        names.map((n) => SOURCES[n].marks).join('; ') +
        ' and found none set. Start it under that launcher (srun, torchrun, an Indexed Job, mpirun) ' +
        'or give --rank, --world-size and --coordinator-host',
    );
  }
  const where = found === undefined ? 'the flags' : `the ${found} environment`;
  const hint = found === undefined ? '' : (SOURCES[found].missing ?? '');
  const rank = explicit.rank ?? reading.rank;
  // Flags, then their LORAFLEET_* variables, then the launcher's own.
  const worldSize = explicit.worldSize ?? int(env, 'LORAFLEET_WORLD_SIZE') ?? reading.worldSize;
  const host =
    explicit.coordinatorHost ?? (env.LORAFLEET_COORDINATOR_HOST || undefined) ?? reading.host;
  const port =
    explicit.coordinatorPort ??
    int(env, 'LORAFLEET_COORDINATOR_PORT') ??
    reading.port ??
    DEFAULT_PORT;
  if (rank === undefined) throw new LaunchError(`${where} gives no rank; give --rank`);
  if (worldSize === undefined || host === undefined) {
    const what =
      worldSize === undefined
        ? 'world size (--world-size)'
        : 'coordinator host (--coordinator-host)';
    throw new LaunchError(`${where} gives no ${what}${hint ? `: ${hint}` : ''}`);
  }
  if (worldSize < 1)
    throw new LaunchError(`${where}: the world size is ${worldSize}; it must be at least 1`);
  if (rank >= worldSize) {
    throw new LaunchError(`${where}: rank ${rank} is not below the world size ${worldSize}`);
  }
  if (port < 1 || port > 65535) throw new LaunchError(`${where}: port ${port} is not a TCP port`);
  return {
    source: found ?? 'flags',
    rank,
    worldSize,
    localRank: explicit.localRank ?? reading.localRank ?? int(env, 'LOCAL_RANK') ?? 0,
    coordinator: { host, port },
    runId: explicit.runId ?? (env.LORAFLEET_RUN_ID || undefined) ?? reading.runId,
    restartCount: reading.restartCount ?? 0,
  };
}

/** "rank 1/3 (local 1) from the slurm environment; coordinator gpu01:29501" */
export function describePlacement(p: Placement): string {
  return (
    `rank ${p.rank}/${p.worldSize} (local rank ${p.localRank}) from ${p.source === 'flags' ? 'the flags' : `the ${p.source} environment`}; ` +
    `coordinator ${p.coordinator.host}:${p.coordinator.port}` +
    (p.runId ? `; run id ${p.runId}` : '') +
    (p.restartCount > 0 ? `; restart ${p.restartCount}` : '')
  );
}

/** 29500 + job id mod 2000: below Linux's ephemeral ports (32768+), distinct for neighbouring jobs. */
export function slurmPort(jobId: number): number {
  return DEFAULT_PORT + (jobId % 2000);
}

function firstHost(list: string): string {
  try {
    const [first] = expandHostlist(list);
    if (first === undefined) throw new LaunchError(`the Slurm node list "${list}" is empty`);
    return first;
  } catch (error) {
    if (error instanceof HostlistError) throw new LaunchError(error.message);
    throw error;
  }
}

/** A non-negative integer variable, or undefined when unset; throws naming the variable when malformed. */
function int(env: Environment, name: string): number | undefined {
  const text = env[name];
  if (text === undefined || text === '') return undefined;
  if (!/^\s*\d+\s*$/.test(text)) {
    throw new LaunchError(`${name}=${JSON.stringify(text)} is not a non-negative integer`);
  }
  return Number(text);
}
