// `lorafleet train --launcher ...`: one command line on every task of a
// Slurm step, an Indexed Job, torchrun or mpirun. Rank 0 coordinates (and
// trains as a worker); the other ranks train as workers.
import { describePlacement } from '@lorafleet/launch';
import type { TrainOptions } from '../training/train-spec.js';
import { launchEndpoints } from './endpoints.js';
import { placementFrom } from './placement.js';
import { runRankWorker } from './rank-worker.js';
import { runRankZero } from './rank-zero.js';

export { launchOptions } from './options.js';

/**
 * Runs this task's part when a launcher placed it (true), or returns false
 * for a plain run. `train` is the coordinator's run, called on rank 0.
 */
export async function runLaunched(
  o: TrainOptions,
  train: (o: TrainOptions) => Promise<void>,
): Promise<boolean> {
  const placement = placementFrom(o, process.env);
  if (!placement) return false;
  const endpoints = await launchEndpoints(placement);
  console.error(`lorafleet train: ${describePlacement(placement)}`);
  if (placement.rank === 0) await runRankZero(o, placement, endpoints, train);
  else await runRankWorker(o, placement, endpoints);
  return true;
}
