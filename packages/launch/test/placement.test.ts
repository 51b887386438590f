import { describe, expect, it } from 'vitest';
import {
  type Environment,
  type ExplicitPlacement,
  type Launcher,
  LaunchError,
  type Placement,
  resolvePlacement,
} from '../src/placement.js';

const TORCHRUN: Environment = {
  RANK: '3',
  WORLD_SIZE: '8',
  LOCAL_RANK: '1',
  MASTER_ADDR: 'node-a',
  MASTER_PORT: '29400',
  TORCHELASTIC_RUN_ID: 'job7',
  TORCHELASTIC_RESTART_COUNT: '2',
};
const SLURM: Environment = {
  SLURM_PROCID: '2',
  SLURM_NTASKS: '3',
  SLURM_LOCALID: '0',
  SLURM_JOB_ID: '4711',
  SLURM_STEP_NODELIST: 'gpu[01-04,07],login1',
  SLURM_JOB_NODELIST: 'other[1-9]',
};
const K8S: Environment = {
  JOB_COMPLETION_INDEX: '1',
  LORAFLEET_WORLD_SIZE: '3',
  LORAFLEET_COORDINATOR_HOST: 'lorafleet-0.lorafleet',
  LORAFLEET_RUN_ID: 'uid-123',
};
const OMPI: Environment = {
  OMPI_COMM_WORLD_RANK: '5',
  OMPI_COMM_WORLD_SIZE: '6',
  OMPI_COMM_WORLD_LOCAL_RANK: '1',
  MASTER_ADDR: '10.0.0.1',
};

const placed = (
  source: Placement['source'],
  rank: number,
  worldSize: number,
  localRank: number,
  host: string,
  port: number,
  runId: string | undefined,
  restartCount = 0,
): Placement => ({
  source,
  rank,
  worldSize,
  localRank,
  coordinator: { host, port },
  runId,
  restartCount,
});

describe('resolvePlacement', () => {
  const table: [string, Launcher, Environment, ExplicitPlacement, Placement | undefined][] = [
    ['none reads nothing', 'none', TORCHRUN, {}, undefined],
    [
      'torchrun',
      'env',
      TORCHRUN,
      {},
      placed('torchrun', 3, 8, 1, 'node-a', 29400, 'torchelastic-job7', 2),
    ],
    [
      'Slurm: first host of the step, port from the job id',
      'slurm',
      SLURM,
      {},
      placed('slurm', 2, 3, 0, 'gpu01', 29500 + (4711 % 2000), 'slurm-4711'),
    ],
    [
      'Slurm with MASTER_PORT and a requeue count',
      'slurm',
      { ...SLURM, MASTER_PORT: '6000', SLURM_RESTART_COUNT: '1' },
      {},
      placed('slurm', 2, 3, 0, 'gpu01', 6000, 'slurm-4711', 1),
    ],
    [
      'Slurm without a step list falls back to the job list',
      'slurm',
      { ...SLURM, SLURM_STEP_NODELIST: undefined },
      {},
      placed('slurm', 2, 3, 0, 'other1', 29500 + (4711 % 2000), 'slurm-4711'),
    ],
    [
      'Kubernetes Indexed Job',
      'k8s',
      K8S,
      {},
      placed('k8s', 1, 3, 0, 'lorafleet-0.lorafleet', 29500, 'uid-123'),
    ],
    [
      'Kubernetes with flags instead of variables',
      'k8s',
      { JOB_COMPLETION_INDEX: '0' },
      { worldSize: 4, coordinatorHost: 'job-0.svc', coordinatorPort: 7000 },
      placed('k8s', 0, 4, 0, 'job-0.svc', 7000, undefined),
    ],
    ['OpenMPI', 'env', OMPI, {}, placed('openmpi', 5, 6, 1, '10.0.0.1', 29500, undefined)],
    // auto: torchrun first, then Slurm, Kubernetes, OpenMPI.
    [
      'auto prefers torchrun over Slurm',
      'auto',
      { ...SLURM, ...TORCHRUN },
      {},
      placed('torchrun', 3, 8, 1, 'node-a', 29400, 'torchelastic-job7', 2),
    ],
    [
      'auto prefers Slurm over Kubernetes',
      'auto',
      { JOB_COMPLETION_INDEX: '1', ...SLURM },
      {},
      placed('slurm', 2, 3, 0, 'gpu01', 29500 + (4711 % 2000), 'slurm-4711'),
    ],
    [
      'auto prefers Kubernetes over OpenMPI',
      'auto',
      { ...OMPI, ...K8S },
      {},
      placed('k8s', 1, 3, 0, 'lorafleet-0.lorafleet', 29500, 'uid-123'),
    ],
    [
      'auto finds OpenMPI',
      'auto',
      OMPI,
      {},
      placed('openmpi', 5, 6, 1, '10.0.0.1', 29500, undefined),
    ],
    // Flags beat the environment; LORAFLEET_* variables beat the launcher's.
    [
      'flags beat the environment',
      'slurm',
      SLURM,
      {
        rank: 0,
        worldSize: 2,
        localRank: 1,
        coordinatorHost: 'h',
        coordinatorPort: 1234,
        runId: 'r',
      },
      placed('slurm', 0, 2, 1, 'h', 1234, 'r'),
    ],
    [
      'LORAFLEET_* variables beat the launcher variables',
      'env',
      {
        ...TORCHRUN,
        LORAFLEET_COORDINATOR_HOST: 'x',
        LORAFLEET_COORDINATOR_PORT: '9',
        LORAFLEET_RUN_ID: 'mine',
      },
      {},
      placed('torchrun', 3, 8, 1, 'x', 9, 'mine', 2),
    ],
    [
      'flags alone, no launcher variables',
      'auto',
      {},
      { rank: 1, worldSize: 2, coordinatorHost: '10.1.1.1' },
      placed('flags', 1, 2, 0, '10.1.1.1', 29500, undefined),
    ],
    [
      '--launcher slurm ignores torchrun variables',
      'slurm',
      { ...TORCHRUN, MASTER_PORT: undefined, ...SLURM },
      {},
      placed('slurm', 2, 3, 0, 'gpu01', 29500 + (4711 % 2000), 'slurm-4711'),
    ],
  ];
  for (const [name, launcher, env, explicit, expected] of table) {
    it(name, () => {
      expect(resolvePlacement(launcher, env, explicit)).toEqual(expected);
    });
  }

  const errors: [string, Launcher, Environment, ExplicitPlacement, RegExp][] = [
    [
      'nothing set: names every variable looked for',
      'auto',
      {},
      {},
      /--launcher auto: cannot tell this process's rank; looked for RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT \(torchrun\); SLURM_PROCID.*; JOB_COMPLETION_INDEX.*; OMPI_COMM_WORLD_RANK.* and found none set/,
    ],
    [
      'slurm outside Slurm',
      'slurm',
      TORCHRUN,
      {},
      /looked for SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_STEP_NODELIST \(Slurm srun\) and found none/,
    ],
    [
      'k8s without the world size',
      'k8s',
      { JOB_COMPLETION_INDEX: '0', LORAFLEET_COORDINATOR_HOST: 'h' },
      {},
      /gives no world size \(--world-size\): an Indexed Job does not say/,
    ],
    [
      'k8s without the host',
      'k8s',
      { JOB_COMPLETION_INDEX: '0' },
      { worldSize: 2 },
      /gives no coordinator host \(--coordinator-host\): .*JOB-0.SERVICE/,
    ],
    [
      'OpenMPI without MASTER_ADDR',
      'env',
      { ...OMPI, MASTER_ADDR: undefined },
      {},
      /mpirun does not say where rank 0 runs/,
    ],
    [
      'a malformed variable',
      'slurm',
      { ...SLURM, SLURM_PROCID: 'two' },
      {},
      /SLURM_PROCID="two" is not a non-negative integer/,
    ],
    [
      'rank past the world',
      'env',
      { ...TORCHRUN, RANK: '8' },
      {},
      /rank 8 is not below the world size 8/,
    ],
    [
      'a bad node list',
      'slurm',
      { ...SLURM, SLURM_STEP_NODELIST: 'gpu[1-' },
      {},
      /host list "gpu\[1-"/,
    ],
    [
      'a bad port',
      'env',
      { ...TORCHRUN, MASTER_PORT: '70000' },
      {},
      /port 70000 is not a TCP port/,
    ],
  ];
  for (const [name, launcher, env, explicit, message] of errors) {
    it(`error: ${name}`, () => {
      expect(() => resolvePlacement(launcher, env, explicit)).toThrow(LaunchError);
      expect(() => resolvePlacement(launcher, env, explicit)).toThrow(message);
    });
  }
});
