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
import { type Options, UsageError } from '../args.js';

const PLACEMENT_FLAGS = [
  'rank',
  'world-size',
  'local-rank',
  'coordinator-host',
  'coordinator-port',
  'run-id',
];

/** The placement, or undefined without a launcher; throws UsageError saying what to change. */
export function placementFrom(o: Options, env: Environment): Placement | undefined {
  const launcher = (o.optionalString('launcher') ?? (env.LORAFLEET_LAUNCHER || 'none')) as Launcher;
  if (launcher === 'none') {
    const stray = PLACEMENT_FLAGS.find((f) => o.has(f));
    if (stray) throw new UsageError(`train: --${stray} needs --launcher (e.g. --launcher auto)`);
    return undefined;
  }
  for (const flag of ['listen', 'expect']) {
    if (o.has(flag)) {
      throw new UsageError(
        `train: --${flag} and --launcher ${launcher} exclude each other: under a launcher, rank 0 listens ` +
          'on --coordinator-host:--coordinator-port and expects --world-size workers',
      );
    }
  }
  if (o.number('workers') !== 1) {
    throw new UsageError(
      `train: --workers and --launcher ${launcher} exclude each other: the launcher starts one task per worker`,
    );
  }
  try {
    return resolvePlacement(launcher, env, {
      rank: o.optionalNumber('rank'),
      worldSize: o.optionalNumber('world-size'),
      localRank: o.optionalNumber('local-rank'),
      coordinatorHost: o.optionalString('coordinator-host'),
      coordinatorPort: o.optionalNumber('coordinator-port'),
      runId: o.optionalString('run-id'),
    });
  } catch (error) {
    if (error instanceof LaunchError) throw new UsageError(`train: ${error.message}`);
    throw error;
  }
}
