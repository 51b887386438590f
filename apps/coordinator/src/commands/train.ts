// `lorafleet train`: one training loop for every fleet (distributed/train.ts).
// Without --workers or --listen the fleet is one worker in this process.
import { membershipFrom } from '../distributed/membership.js';
import { runLaunched } from '../launch/index.js';
import { runTraining } from '../distributed/train.js';
import { checkTrainOptions } from '../training/contradictions.js';
import type { TrainOptions } from '../training/train-spec.js';
export { trainSpec } from '../training/train-spec.js';

export async function runTrain(o: TrainOptions): Promise<void> {
  if (await runLaunched(o, runTrain)) return;
  checkTrainOptions(o);
  const membership = membershipFrom(o, (w) => console.warn(`warning: ${w}`));
  await runTraining(o, membership ?? { kind: 'inprocess', workers: 1 });
}
