// Evaluation on the hand-scheduled step (scheduled-step.ts): each batch
// replays a forward-only plan that adds its loss sum and TRL's token metrics
// on the device; the sums are read once at the end. No dropout applies in evaluation, so a model
// whose training takes the tape for its dropout evaluates here too.
import { type PlanRecorder, tf } from '@lorafleet/core';
import type { CausalLM } from './causal-lm.js';
import type { TokenBatch } from './labels.js';
import {
  ShapePlans,
  planInputs,
  planShape,
  recordMicroBatch,
  scheduledStepUnsupported,
  stepGradientsChoice,
} from './scheduled-step.js';

export class ScheduledLoss {
  private readonly plans: ShapePlans;
  /** [3]: the summed loss and TOKEN_STATS. */
  private readonly sum: tf.Tensor1D;
  private empty = true;
  /** Why packed documents take the tape's forward (null: they take the plan). */
  private readonly packedUnsupported: string | null;

  constructor(private readonly model: CausalLM) {
    const why = scheduledStepUnsupported(model, null);
    if (why !== null) throw new Error(`the scheduled step cannot evaluate: ${why}`);
    this.packedUnsupported = scheduledStepUnsupported(model, null, true);
    this.sum = tf.zeros([3]);
    // The active adapters change between steps: copied in at each replay.
    const adapters = model
      .linears()
      .flatMap((l) => (l.activeAdapter ? [l.activeAdapter.a, l.activeAdapter.b] : []));
    this.plans = new ShapePlans((rec: PlanRecorder, shape) => {
      const { ops, loss } = recordMicroBatch(rec, model, adapters, { ...shape, forwardOnly: true });
      ops.accumulate(this.sum, loss);
    });
  }

  /** Whether it evaluates `batch` (packed documents: where the model's recipe takes them). */
  takes(batch: TokenBatch): boolean {
    return !batch.positionIds || this.packedUnsupported === null;
  }

  /** Adds one batch's loss sum on the device (queued, not awaited); a batch it takes. */
  add(batch: TokenBatch): void {
    if (!this.takes(batch))
      throw new Error(
        `the scheduled step cannot evaluate packed documents: ${this.packedUnsupported}`,
      );
    const inputs = planInputs(batch, this.model.modelConfig.vocabSize);
    this.plans.get(planShape(batch)).replay(inputs, this.empty ? [this.sum] : []);
    this.empty = false;
  }

  /** The summed loss and TOKEN_STATS, with one read (zeros when nothing was added); empty again after. */
  async take(): Promise<{ lossSum: number; stats: Float32Array }> {
    if (this.empty) return { lossSum: 0, stats: new Float32Array(2) };
    const values = await this.plans.any()!.read(this.sum);
    this.empty = true;
    return { lossSum: values[0]!, stats: values.slice(1, 3) };
  }

  dispose(): void {
    this.plans.dispose();
    this.sum.dispose();
  }
}

/**
 * Evaluation's path for `model`: a ScheduledLoss where the scheduled step
 * can evaluate it (LORAFLEET_WEBGPU_STEP auto or scheduled), else null (the
 * tape's forward). Under `scheduled`, an unsupported model is an error.
 */
export function scheduledEvaluation(model: CausalLM): ScheduledLoss | null {
  const choice = stepGradientsChoice();
  if (choice === 'tape') return null;
  const why = scheduledStepUnsupported(model, null);
  if (why === null) return new ScheduledLoss(model);
  if (choice === 'scheduled') throw new Error(`LORAFLEET_WEBGPU_STEP=scheduled, but ${why}`);
  return null;
}
