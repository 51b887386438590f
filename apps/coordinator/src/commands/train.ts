// `lorafleet train`: one training loop for every fleet (distributed/train.ts).
// Without --workers or --listen the fleet is one worker in this process.
import { membershipFrom } from '../distributed/membership.js';
import { runLaunched } from '../launch/index.js';
import { runTraining } from '../distributed/train.js';
import { readModelConfig } from '@lorafleet/models';
import { baseDtypeFor } from '../common.js';
import { checkTrainOptions } from '../training/contradictions.js';
import type { TrainOptions } from '../training/train-spec.js';
import { withValues } from '../args.js';
export { trainSpec } from '../training/train-spec.js';

export async function runTrain(given: TrainOptions): Promise<void> {
  if (await runLaunched(given, runTrain)) return;
  checkTrainOptions(given);
  // Resolved once, before the run's configuration (and a resume's check of it) reads it.
  const config = await readModelConfig(given.model);
  const o = withValues(given, {
    baseDtype: baseDtypeFor(given.baseDtype, config, given.fullFinetune),
  });
  const membership = membershipFrom(o, (w) => console.warn(`warning: ${w}`)) ?? {
    kind: 'inprocess',
    workers: 1,
  };
  await runTraining(withAccumulation(o, membership.workers), membership);
}

/** --gradient-accumulation-steps A: the batch transformers runs, --micro-batch-size x A x the workers. */
function withAccumulation(o: TrainOptions, workers: number): TrainOptions {
  const steps = o.gradientAccumulationSteps;
  if (steps === undefined) return o;
  return withValues(o, { batchSize: o.microBatchSize! * steps * workers });
}
