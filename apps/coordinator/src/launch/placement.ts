// `lorafleet train --launcher ...`: this process's placement from the flags
// and the launcher's variables, with the flag combinations that make no
// sense under a launcher refused.
import {
  LaunchError,
  type Launcher,
  type Placement,
  type Environment,
  resolvePlacement,
} from '@lorafleet/launch';
import { UsageError } from '../args.js';
import type { TrainOptions } from '../training/train-spec.js';

const PLACEMENT_FLAGS = [
  ['rank', 'rank'],
  ['world-size', 'worldSize'],
  ['local-rank', 'localRank'],
  ['coordinator-host', 'coordinatorHost'],
  ['coordinator-port', 'coordinatorPort'],
  ['run-id', 'runId'],
] as const;

/** What a placement flag given without a launcher may have been meant as. */
const MEANT_INSTEAD: Partial<Record<(typeof PLACEMENT_FLAGS)[number][0], string>> = {
  rank: "; it is this task's rank in a launched job: LoRA's rank r is --lora-r",
  'world-size':
    '; it is the number of tasks in a launched job: local worker processes are --workers',
};

/** The placement, or undefined without a launcher; throws UsageError saying what to change. */
export function placementFrom(o: TrainOptions, env: Environment): Placement | undefined {
  const launcher = o.launcher ?? ((env.LORAFLEET_LAUNCHER || 'none') as Launcher);
  if (launcher === 'none') {
    const stray = PLACEMENT_FLAGS.find(([, key]) => o[key] !== undefined);
    if (stray) {
      throw new UsageError(
        `train: --${stray[0]} needs --launcher (e.g. --launcher auto)${MEANT_INSTEAD[stray[0]] ?? ''}`,
      );
    }
    return undefined;
  }
  for (const flag of ['listen', 'expect'] as const) {
    if (o[flag] !== undefined) {
      throw new UsageError(
        `train: --${flag} and --launcher ${launcher} exclude each other: under a launcher, rank 0 listens ` +
          'on --coordinator-host:--coordinator-port and expects --world-size workers',
      );
    }
  }
  if (o.workers !== 1) {
    throw new UsageError(
      `train: --workers and --launcher ${launcher} exclude each other: the launcher starts one task per worker`,
    );
  }
  try {
    return resolvePlacement(launcher, env, {
      rank: o.rank,
      worldSize: o.worldSize,
      localRank: o.localRank,
      coordinatorHost: o.coordinatorHost,
      coordinatorPort: o.coordinatorPort,
      runId: o.runId,
    });
  } catch (error) {
    if (error instanceof LaunchError) throw new UsageError(`train: ${error.message}`);
    throw error;
  }
}
