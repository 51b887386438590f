// The options of `lorafleet train` under a cluster engine (spread into
// train's spec): which launcher's variables to read, and the flags that beat them.
import { LAUNCHERS } from '@lorafleet/launch';
import { defineOptions } from '../args.js';

export const launchOptions = defineOptions({
  launcher: {
    kind: 'string',
    value: 'NAME',
    choices: LAUNCHERS,
    description:
      'one command on every task: read rank, world size, local rank and the coordinator address from ' +
      'torchrun/OpenMPI (env), Slurm (slurm), an Indexed Job (k8s) or whichever is set (auto); rank 0 ' +
      'runs the coordinator and a worker, the others a worker (env LORAFLEET_LAUNCHER; default none)',
  },
  rank: {
    kind: 'int',
    min: 0,
    description: "with --launcher: this task's rank (beats the launcher's variables)",
  },
  'world-size': {
    kind: 'int',
    min: 1,
    max: 256,
    description: 'with --launcher: the number of tasks (k8s: required, or LORAFLEET_WORLD_SIZE)',
  },
  'local-rank': {
    kind: 'int',
    min: 0,
    description: 'with --launcher: rank on this host, the default GPU of a GPU backend',
  },
  'coordinator-host': {
    kind: 'string',
    value: 'HOST',
    description:
      "with --launcher: rank 0's host (k8s: JOB-0.SERVICE, or LORAFLEET_COORDINATOR_HOST)",
  },
  'coordinator-port': {
    kind: 'int',
    min: 1,
    max: 65535,
    description:
      'with --launcher: the control port (default MASTER_PORT; Slurm 29500 + job id mod 2000; else 29500)',
  },
  'run-id': {
    kind: 'string',
    value: 'ID',
    description:
      'with --launcher: the id a restarted job shares (default SLURM_JOB_ID, TORCHELASTIC_RUN_ID or ' +
      'LORAFLEET_RUN_ID); a restart with the same id resumes from the newest checkpoint in --out',
  },
});
