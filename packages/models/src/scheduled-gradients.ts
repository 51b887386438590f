// A training step's micro-batches on the hand-scheduled step
// (scheduled-step.ts): each replays its plan, which adds its loss, TRL's token
// metrics and fused gradient to device-side sums, read once per step (as the tape's
// GradientAccumulator does).
import { PlanRecorder, type RecordingBackend, type TrainableParameters, tf } from '@lorafleet/core';
import type { CausalLM } from './causal-lm.js';
import type { TokenBatch } from './labels.js';
import { neftuneValues } from './neftune.js';
import {
  type DropoutSite,
  type PlanShape,
  ShapePlans,
  dropoutInputs,
  planInputs,
  planShape,
  recordMicroBatch,
  scheduledStepUnsupported,
} from './scheduled-step.js';

type Info = tf.TensorInfo;

export class ScheduledGradients {
  private readonly plans: ShapePlans<DropoutSite[]>;
  /** [n + 3]: the summed gradient, then the summed loss and TOKEN_STATS. */
  private readonly sum: tf.Tensor1D;
  private empty = true;
  /** Why packed documents cannot take the plan (null: they can; undefined: not asked yet). */
  private packedUnsupported: string | null | undefined;

  /** NEFTune's alpha (neftune.ts): its noise drawn on the host per micro-batch, as the tape's; 0: none. */
  private readonly neftuneAlpha: number;

  constructor(
    private readonly model: CausalLM,
    private readonly params: TrainableParameters,
    options: { neftuneAlpha?: number } = {},
  ) {
    const why = scheduledStepUnsupported(model, params);
    if (why !== null) throw new Error(`the scheduled step cannot run: ${why}`);
    this.neftuneAlpha = options.neftuneAlpha ?? 0;
    this.sum = tf.zeros([params.size + 3]);
    const neftune = this.neftuneAlpha > 0;
    this.plans = new ShapePlans((rec, shape) =>
      record(rec, model, params, { ...shape, neftune }, this.sum),
    );
  }

  /** Bytes of the plans' buffers (activations, gradients, inputs). */
  get planBytes(): number {
    return this.plans.bytes;
  }

  /** Dispatches per replay of the plans made so far (the largest). */
  get dispatches(): number {
    return this.plans.dispatches;
  }

  /**
   * Adds one micro-batch's loss sum and gradient to the device-side sums
   * (queued, not awaited); `seed` draws its dropout masks as the tape's pass
   * with that seed does.
   */
  add(batch: TokenBatch, seed = 0): void {
    const { plan, meta: sites } = this.plans.entry(this.shapeOf(batch));
    const inputs = { ...this.inputsOf(batch, seed), ...dropoutInputs(sites, seed) };
    plan.replay(inputs, this.empty ? [this.sum] : []);
    this.empty = false;
  }

  /**
   * One micro-batch replayed with every dispatch timed on the GPU (Plan.profile):
   * each dispatch's kernel, output shape and nanoseconds. For benchmarks,
   * between steps: it leaves the sums empty.
   */
  async profile(batch: TokenBatch): Promise<{ label: string; ns: number }[]> {
    const { plan, meta: sites } = this.plans.entry(this.shapeOf(batch));
    const inputs = { ...this.inputsOf(batch, 0), ...dropoutInputs(sites, 0) };
    const rows = await plan.profile(inputs, [this.sum]);
    this.empty = true; // the timed replay's sum is dropped
    return rows;
  }

  /** The sums (stats: TOKEN_STATS), with one read (zeros when nothing was added); empty again after. */
  async take(): Promise<{ grads: Float32Array; loss: number; stats: Float32Array }> {
    const n = this.params.size;
    if (this.empty) return { grads: new Float32Array(n), loss: 0, stats: new Float32Array(2) };
    const values = await this.plans.any()!.read(this.sum);
    this.empty = true;
    return { grads: values.subarray(0, n), loss: values[n]!, stats: values.slice(n + 1, n + 3) };
  }

  /** A micro-batch's plan inputs: ids, labels, packed documents', and NEFTune's noise for `seed`. */
  private inputsOf(batch: TokenBatch, seed: number): Record<string, Int32Array | Float32Array> {
    const inputs = planInputs(batch, this.model.modelConfig.vocabSize);
    if (this.neftuneAlpha === 0) return inputs;
    const { batchSize: B, seqLen: T } = batch;
    const C = this.model.modelConfig.hiddenSize;
    return { ...inputs, neftune: neftuneValues(B, T, C, this.neftuneAlpha, seed) };
  }

  /** The plan shape of `batch`, which must be one the scheduled step can train. */
  private shapeOf(batch: TokenBatch): PlanShape {
    const shape = planShape(batch);
    // Asked once, at the first packed micro-batch: nothing it reads changes during a run.
    if (shape.packed && this.packedUnsupported === undefined)
      this.packedUnsupported = scheduledStepUnsupported(this.model, this.params, true);
    const why = shape.packed ? this.packedUnsupported : null;
    if (why) throw new Error(`the scheduled step cannot train packed documents: ${why}`);
    return shape;
  }

  /** Drops a partial sum (an aborted step): the next add starts from zero. */
  reset(): void {
    this.empty = true;
  }

  dispose(): void {
    this.plans.dispose();
    this.sum.dispose();
  }
}

/** A micro-batch's training plan: forward, backward, its fused [n + 3] added into `sum`. */
function record(
  rec: PlanRecorder,
  model: CausalLM,
  params: TrainableParameters,
  shape: PlanShape & { neftune?: boolean },
  sum: Info,
): DropoutSite[] {
  const { ops, loss, grads, sites } = recordMicroBatch(rec, model, params.variables, {
    ...shape,
    forwardOnly: false,
  });
  // The fused [n + 3] of this micro-batch, in the parameters' order, then added to the sums.
  const flat = rec.constant(new Float32Array(params.size + 3), [params.size + 3]);
  for (const slot of params.slots) {
    const g = grads.get(slot.variable);
    if (!g) throw new Error(`the scheduled step computed no gradient for ${slot.name}`);
    rec.copy(g, flat, slot.offset);
  }
  rec.copy(loss, flat, params.size);
  ops.accumulate(sum, flat);
  return sites;
}

/**
 * The device memory a micro-batch's training plan would take (its buffers
 * after sharing by liveness, and without sharing), measured by recording it
 * with nothing uploaded: works for shapes the device could not hold.
 */
export function scheduledStepBytes(
  model: CausalLM,
  params: TrainableParameters,
  batch: number,
  seq: number,
): { shared: number; unshared: number; dispatches: number } {
  const why = scheduledStepUnsupported(model, params);
  if (why !== null) throw new Error(`the scheduled step cannot run: ${why}`);
  const rec = new PlanRecorder(tf.backend() as unknown as RecordingBackend, { measureOnly: true });
  const sum = tf.zeros([params.size + 3]);
  try {
    record(rec, model, params, { batch, seq, packed: false }, sum);
    return rec.bytes();
  } finally {
    sum.dispose();
  }
}
