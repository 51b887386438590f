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
  const membership = membershipFrom(o, (w) => console.warn(`warning: ${w}`));
  await runTraining(o, membership ?? { kind: 'inprocess', workers: 1 });
}
