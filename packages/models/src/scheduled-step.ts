// The hand-scheduled training step on webgpu (docs/webgpu-kernels.md, "The
// hand-scheduled step"): a family's recipe records one micro-batch's forward
// and backward as explicit kernels over buffers allocated once by liveness
// (core's PlanRecorder), and each micro-batch replays it as one command
// buffer. No tape, no tensor per op, no bind group per dispatch. It sums
// the micro-batches' loss and fused gradient on the device, as the tape's
// GradientAccumulator does, and reads them once per step.
import {
  type Plan,
  PlanOps,
  PlanRecorder,
  type RecordingBackend,
  type TrainableParameters,
  tf,
  webGpuMatMulChoice,
} from '@lorafleet/core';
import type { CausalLM } from './causal-lm.js';
import { type TokenBatch, shiftedLabels } from './loss.js';

type Info = tf.TensorInfo;

/** What a recipe's recording reads: the plan's host inputs and the micro-batch's shape. */
export interface StepIo {
  ids: Info; // [B * T] int32
  labels: Info; // [B * T] int32, shifted (row b*T+t predicts t+1), negative: ignored
  ones: Info; // [B * T] f32: the loss sum's gradient per row
  batch: number;
  seq: number;
  /** A trained variable's value inside the plan (copied in at each replay); others as they are. */
  param(v: tf.Variable): Info;
}

/** A family's hand-scheduled step. */
export interface ScheduledStepRecipe {
  /** Why this model, as configured and trained, cannot take it (null: it can). */
  unsupported(params: TrainableParameters): string | null;
  /** Records forward and backward: the loss sum [1] and each trained variable's gradient. */
  record(ops: PlanOps, io: StepIo): { loss: Info; grads: Map<tf.Variable, Info> };
}

/** The step's gradient path: tfjs's tape, or the hand-scheduled plan where it runs. */
export type StepGradients = 'tape' | 'scheduled';

/** Why `model` cannot take the scheduled step with `params` on the current backend, or null. */
export function scheduledStepUnsupported(
  model: CausalLM,
  params: TrainableParameters,
): string | null {
  if (tf.getBackend() !== 'webgpu') return `the backend is ${tf.getBackend()}, not webgpu`;
  if (webGpuMatMulChoice() !== 'project')
    return "LORAFLEET_WEBGPU_KERNELS=stock: the plan records the project's kernels";
  if (!model.scheduledStep)
    return `the ${model.modelConfig.modelType} family has no scheduled step yet`;
  return model.scheduledStep.unsupported(params);
}

/** Plans kept at once (per micro-batch shape), least recently used dropped first. */
const MAX_PLANS = 2;

export class ScheduledGradients {
  private readonly plans = new Map<string, Plan>();
  /** [n + 1]: the summed gradient, then the summed loss. */
  private readonly sum: tf.Tensor1D;
  private empty = true;

  constructor(
    private readonly model: CausalLM,
    private readonly params: TrainableParameters,
  ) {
    const why = scheduledStepUnsupported(model, params);
    if (why !== null) throw new Error(`the scheduled step cannot run: ${why}`);
    this.sum = tf.zeros([params.size + 1]);
  }

  /** Bytes of the plans' buffers (activations, gradients, inputs). */
  get planBytes(): number {
    return [...this.plans.values()].reduce((a, p) => a + p.bytes, 0);
  }

  /** Dispatches per replay of the plans made so far (the largest). */
  get dispatches(): number {
    return Math.max(0, ...[...this.plans.values()].map((p) => p.dispatches));
  }

  /** Adds one micro-batch's loss sum and gradient to the device-side sums (queued, not awaited). */
  add(batch: TokenBatch): void {
    const V = this.model.modelConfig.vocabSize;
    const labels = shiftedLabels(batch, V);
    for (const [i, id] of batch.ids.entries()) {
      if (!(id >= 0 && id < V))
        throw new Error(`token id ${id} at ${i} is outside the vocabulary (0..${V - 1})`);
    }
    const plan = this.planFor(batch.batchSize, batch.seqLen);
    plan.replay({ ids: batch.ids, labels }, this.empty ? [this.sum] : []);
    this.empty = false;
  }

  /**
   * One micro-batch replayed with every dispatch timed on the GPU (Plan.profile):
   * each dispatch's kernel, output shape and nanoseconds. For benchmarks,
   * between steps: it leaves the sums empty.
   */
  async profile(batch: TokenBatch): Promise<{ label: string; ns: number }[]> {
    const labels = shiftedLabels(batch, this.model.modelConfig.vocabSize);
    const plan = this.planFor(batch.batchSize, batch.seqLen);
    const rows = await plan.profile({ ids: batch.ids, labels }, [this.sum]);
    this.empty = true; // the timed replay's sum is dropped
    return rows;
  }

  /** The sums, with one read (zeros when nothing was added); empty again after. */
  async take(): Promise<{ grads: Float32Array; loss: number }> {
    const n = this.params.size;
    if (this.empty) return { grads: new Float32Array(n), loss: 0 };
    const plan = this.plans.values().next().value as Plan;
    const values = await plan.read(this.sum);
    this.empty = true;
    return { grads: values.subarray(0, n), loss: values[n]! };
  }

  /** Drops a partial sum (an aborted step): the next add starts from zero. */
  reset(): void {
    this.empty = true;
  }

  dispose(): void {
    for (const plan of this.plans.values()) plan.dispose();
    this.plans.clear();
    this.sum.dispose();
  }

  private planFor(batch: number, seq: number): Plan {
    const key = `${batch}x${seq}`;
    const found = this.plans.get(key);
    if (found) {
      // Most recently used last: the first is the one to drop.
      this.plans.delete(key);
      this.plans.set(key, found);
      return found;
    }
    // A step's micro-batches have one shape, or two (a smaller last one): more
    // plans would each hold a micro-batch's activations on the device.
    while (this.plans.size >= MAX_PLANS) {
      const [oldest, plan] = this.plans.entries().next().value as [string, Plan];
      plan.dispose(); // work already submitted still completes
      this.plans.delete(oldest);
    }
    const rec = new PlanRecorder(tf.backend() as unknown as RecordingBackend);
    recordMicroBatch(rec, this.model, this.params, batch, seq, this.sum);
    const plan = rec.finish();
    this.plans.set(key, plan);
    return plan;
  }
}

/**
 * Records one micro-batch of `model`'s scheduled step into `rec`: its inputs,
 * forward and backward, the fused [n + 1] gradient and loss, added into `sum`.
 */
function recordMicroBatch(
  rec: PlanRecorder,
  model: CausalLM,
  params: TrainableParameters,
  batch: number,
  seq: number,
  sum: Info,
): void {
  const n = batch * seq;
  const param = new Map(params.variables.map((v) => [v, rec.param(v)]));
  const io: StepIo = {
    ids: rec.input('ids', [n], 'int32'),
    labels: rec.input('labels', [n], 'int32'),
    ones: rec.constant(new Float32Array(n).fill(1), [n]),
    batch,
    seq,
    param: (v) => param.get(v) ?? v,
  };
  const ops = new PlanOps(rec);
  const { loss, grads } = model.scheduledStep!.record(ops, io);
  // The fused [n + 1] of this micro-batch, in the parameters' order, then added to the sums.
  const flat = rec.constant(new Float32Array(params.size + 1), [params.size + 1]);
  for (const slot of params.slots) {
    const g = grads.get(slot.variable);
    if (!g) throw new Error(`the scheduled step computed no gradient for ${slot.name}`);
    rec.copy(g, flat, slot.offset);
  }
  rec.copy(loss, flat, params.size);
  ops.accumulate(sum, flat);
}

/**
 * The device memory a micro-batch's plan would take (its buffers after
 * sharing by liveness, and without sharing), measured by recording it with
 * nothing uploaded: works for shapes the device could not hold.
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
  const sum = tf.zeros([params.size + 1]);
  try {
    recordMicroBatch(rec, model, params, batch, seq, sum);
    return rec.bytes();
  } finally {
    sum.dispose();
  }
}

/** LORAFLEET_WEBGPU_STEP: which gradient path a training step takes on webgpu. */
export type StepGradientsChoice = 'auto' | StepGradients;

const CHOICES: Record<StepGradientsChoice, string> = {
  auto: 'the scheduled step where the model and backend support it, the tape otherwise',
  scheduled: 'the scheduled step, or an error naming why it cannot run',
  tape: "tfjs's autodiff tape (the reference)",
};

/** Reads LORAFLEET_WEBGPU_STEP (default auto), with an error that lists the values. */
export function stepGradientsChoice(env: NodeJS.ProcessEnv = process.env): StepGradientsChoice {
  const value = env.LORAFLEET_WEBGPU_STEP ?? 'auto';
  if (!(value in CHOICES)) {
    const list = Object.entries(CHOICES)
      .map(([k, v]) => `"${k}" (${v})`)
      .join(', ');
    throw new Error(`LORAFLEET_WEBGPU_STEP must be one of ${list}; got "${value}"`);
  }
  return value as StepGradientsChoice;
}

/** The path a step takes for `model` and `params` under `choice`, and why not the scheduled one. */
export function chooseStepGradients(
  model: CausalLM,
  params: TrainableParameters,
  choice: StepGradientsChoice = stepGradientsChoice(),
): { path: StepGradients; reason: string | null } {
  if (choice === 'tape') return { path: 'tape', reason: 'LORAFLEET_WEBGPU_STEP=tape' };
  const why = scheduledStepUnsupported(model, params);
  if (why === null) return { path: 'scheduled', reason: null };
  if (choice === 'scheduled') throw new Error(`LORAFLEET_WEBGPU_STEP=scheduled, but ${why}`);
  return { path: 'tape', reason: why };
}
