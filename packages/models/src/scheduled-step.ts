// The hand-scheduled step on webgpu (docs/webgpu-kernels.md, "The
// hand-scheduled step"): a family's recipe records one micro-batch's forward
// (and backward) as explicit kernels over buffers allocated once by liveness
// (core's PlanRecorder), and each micro-batch replays it as one command
// buffer: no tape, no tensor per op, no bind group per dispatch. This file
// holds the contract, the recording of a micro-batch, the plans kept per
// shape and the choice of path; scheduled-gradients.ts (training) and
// scheduled-loss.ts (evaluation) replay them.
import type { ObjectiveKind } from './objective.js';
import {
  dropoutKeys,
  type Plan,
  type PlanDropout,
  PlanOps,
  PlanRecorder,
  type RecordingBackend,
  type TrainableParameters,
  tf,
  webGpuMatMulChoice,
} from '@lorafleet/core';
import type { CausalLM } from './causal-lm.js';
import { type TokenBatch, shiftedLabels } from './labels.js';
import { documentSpans } from './packed-documents.js';

type Info = tf.TensorInfo;

/** What a recipe's recording reads: the plan's host inputs and the micro-batch's shape. */
export interface StepIo {
  ids: Info; // [B * T] int32
  labels: Info; // [B * T] int32, shifted (row b*T+t predicts t+1), negative: ignored
  ones: Info; // [B * T] f32: the loss sum's gradient per row
  batch: number;
  seq: number;
  /**
   * Packed documents (packed-documents.ts), else null: each token's position
   * in its document [B * T] int32 (for the embedding or rotation) and its
   * document's first and last token in the row [B * T, 2] int32 (what
   * attention sees: ops.attention's spans).
   */
  documents: { positions: Info; spans: Info } | null;
  /** NEFTune's noise on the token embeddings [B * T, C] (neftune.ts), written per replay; null: none. */
  neftune: Info | null;
  /** A trained variable's value inside the plan (copied in at each replay); others as they are. */
  param(v: tf.Variable): Info;
  /**
   * A dropout site whose mask the tape draws with seed `seed(micro-batch
   * seed)` (the model's own derivation): ops.dropout applies that mask to a
   * tensor of the site's shape, as often as needed (forward, then backward),
   * and ops.attention to the probabilities. Null when evaluating or at rate 0.
   */
  dropoutSite(rate: number, seed: (batchSeed: number) => number): PlanDropout | null;
  /** Evaluation: record the forward pass and the loss only (no gradient). */
  forwardOnly: boolean;
}

/** A family's hand-scheduled step. */
export interface ScheduledStepRecipe {
  /**
   * Why this model, as configured, cannot take it (null: it can): training
   * `params`, or evaluation (null: no dropout, nothing trained); `packed`:
   * on micro-batches of packed documents.
   */
  unsupported(params: TrainableParameters | null, packed: boolean): string | null;
  /**
   * Records the forward pass and the loss sums [3] (headAndLoss), then (unless
   * io.forwardOnly) the backward pass: each trained variable's gradient.
   */
  record(ops: PlanOps, io: StepIo): { loss: Info; grads: Map<tf.Variable, Info> };
}

/** The step's gradient path: tfjs's tape, or the hand-scheduled plan where it runs. */
export type StepGradients = 'tape' | 'scheduled';

/**
 * Why `model` cannot take the scheduled step on the current backend, training
 * `params` (null: evaluating), on rows of packed documents where `packed`, or null.
 */
export function scheduledStepUnsupported(
  model: CausalLM,
  params: TrainableParameters | null,
  packed = false,
): string | null {
  if (tf.getBackend() !== 'webgpu') return `the backend is ${tf.getBackend()}, not webgpu`;
  if (webGpuMatMulChoice() !== 'project')
    return "LORAFLEET_WEBGPU_KERNELS=stock: the plan records the project's kernels";
  if (!model.scheduledStep)
    return `the ${model.modelConfig.modelType} family has no scheduled step yet`;
  return model.scheduledStep.unsupported(params, packed);
}

/**
 * Why a model with attention dropout (its config's `field`) trains packed
 * documents on the tape: the tape draws each document's mask over its own
 * [L, L] probabilities (packed-documents.ts), the kernels over the row's.
 */
export const packedDropoutReason = (field: string) =>
  `${field} > 0: the tape draws attention dropout per packed document, the hand-scheduled step per row (set ${field} to 0 to train packed documents on it)`;

/** Plans kept at once (per micro-batch shape), least recently used dropped first. */
const MAX_PLANS = 2;

/** A micro-batch's shape as its plan is recorded: [batch, seq], and whether it packs documents. */
export interface PlanShape {
  batch: number;
  seq: number;
  packed: boolean;
}

/** The plan shape of `batch`. */
export const planShape = (batch: TokenBatch): PlanShape => ({
  batch: batch.batchSize,
  seq: batch.seqLen,
  packed: batch.positionIds !== undefined,
});

/**
 * A micro-batch's plan per shape, recorded on first use. A step's
 * micro-batches have one shape, or two (a smaller last one): more plans would
 * each hold a micro-batch's activations on the device, so the least recently
 * used is dropped beyond two.
 */
export class ShapePlans<T = void> {
  private readonly plans = new Map<string, { plan: Plan; meta: T }>();

  /** `record` records a micro-batch of `shape` and returns what its replays need besides the plan. */
  constructor(private readonly record: (rec: PlanRecorder, shape: PlanShape) => T) {}

  get(shape: PlanShape): Plan {
    return this.entry(shape).plan;
  }

  /** The plan of `shape` and what its recording returned. */
  entry(shape: PlanShape): { plan: Plan; meta: T } {
    const key = `${shape.batch}x${shape.seq}${shape.packed ? ' packed' : ''}`;
    const found = this.plans.get(key);
    if (found) {
      this.plans.delete(key); // most recently used last: the first is the one to drop
      this.plans.set(key, found);
      return found;
    }
    while (this.plans.size >= MAX_PLANS) {
      const [oldest, { plan }] = this.plans.entries().next().value as [string, { plan: Plan }];
      plan.dispose(); // work already submitted still completes
      this.plans.delete(oldest);
    }
    const rec = new PlanRecorder(tf.backend() as unknown as RecordingBackend);
    const meta = this.record(rec, shape);
    const entry = { plan: rec.finish(), meta };
    this.plans.set(key, entry);
    return entry;
  }

  /** Any plan (they all read tensors the same way), or undefined before the first. */
  any(): Plan | undefined {
    return this.plans.values().next().value?.plan;
  }

  /** Bytes of the plans' buffers. */
  get bytes(): number {
    return [...this.plans.values()].reduce((a, e) => a + e.plan.bytes, 0);
  }

  /** Dispatches per replay (the largest plan's). */
  get dispatches(): number {
    return Math.max(0, ...[...this.plans.values()].map((e) => e.plan.dispatches));
  }

  dispose(): void {
    for (const { plan } of this.plans.values()) plan.dispose();
    this.plans.clear();
  }
}

/** A dropout site of a recorded plan: the input its keys go to, its rate and seed. */
export interface DropoutSite {
  input: string;
  rate: number;
  seed: (batchSeed: number) => number;
}

/** The keys of every dropout site for a micro-batch's seed, as the plan's inputs. */
export function dropoutInputs(
  sites: readonly DropoutSite[],
  batchSeed: number,
): Record<string, Int32Array> {
  const inputs: Record<string, Int32Array> = {};
  for (const site of sites) {
    const { k1, k2 } = dropoutKeys(site.seed(batchSeed), site.rate);
    inputs[site.input] = Int32Array.of(k1 | 0, k2 | 0);
  }
  return inputs;
}

/**
 * Records one micro-batch of `model`'s scheduled step into `rec`: its inputs
 * (ids, labels), forward, and unless `forwardOnly` backward. `copied`: the
 * variables copied into the plan at each replay (they change between steps).
 */
export function recordMicroBatch(
  rec: PlanRecorder,
  model: CausalLM,
  copied: readonly tf.Variable[],
  shape: PlanShape & { forwardOnly: boolean; neftune?: boolean },
): { ops: PlanOps; loss: Info; grads: Map<tf.Variable, Info>; sites: DropoutSite[] } {
  const n = shape.batch * shape.seq;
  const { packed, neftune = false, ...dims } = shape;
  const C = model.modelConfig.hiddenSize;
  const param = new Map(copied.map((v) => [v, rec.param(v)]));
  const ops = new PlanOps(rec);
  const sites: DropoutSite[] = [];
  const io: StepIo = {
    ids: rec.input('ids', [n], 'int32'),
    labels: rec.input('labels', [n], 'int32'),
    ones: rec.constant(new Float32Array(n).fill(1), [n]),
    ...dims,
    documents: packed
      ? {
          positions: rec.input('positions', [n], 'int32'),
          spans: rec.input('spans', [n, 2], 'int32'),
        }
      : null,
    neftune: neftune && !dims.forwardOnly ? rec.input('neftune', [n, C], 'float32') : null,
    param: (v) => param.get(v) ?? v,
    dropoutSite: (rate, seed) => {
      if (shape.forwardOnly || rate === 0) return null;
      const input = `dropout${sites.length}`;
      sites.push({ input, rate, seed });
      return { keys: rec.input(input, [2], 'int32'), rate };
    },
  };
  return { ops, sites, ...model.scheduledStep!.record(ops, io) };
}

/**
 * A micro-batch's ids checked against the vocabulary, its shifted labels, and
 * where it packs documents their positions and spans (StepIo.documents).
 */
export function planInputs(batch: TokenBatch, vocabSize: number): Record<string, Int32Array> {
  const labels = shiftedLabels(batch, vocabSize);
  for (const [i, id] of batch.ids.entries()) {
    if (!(id >= 0 && id < vocabSize))
      throw new Error(`token id ${id} at ${i} is outside the vocabulary (0..${vocabSize - 1})`);
  }
  const positions = batch.positionIds;
  if (!positions) return { ids: batch.ids, labels };
  return {
    ids: batch.ids,
    labels,
    positions,
    spans: documentSpans(positions, batch.batchSize, batch.seqLen),
  };
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

/**
 * The path a step takes for `model` training `params` (null: evaluating)
 * under `choice`, and why not the scheduled one.
 */
export function chooseStepGradients(
  model: CausalLM,
  params: TrainableParameters | null,
  choice: StepGradientsChoice = stepGradientsChoice(),
  options: {
    gradientCheckpointing?: boolean;
    objective?: ObjectiveKind;
    packedDocuments?: boolean;
  } = {},
): { path: StepGradients; reason: string | null } {
  if (choice === 'tape') return { path: 'tape', reason: 'LORAFLEET_WEBGPU_STEP=tape' };
  const why =
    (options.objective ?? 'sft') !== 'sft'
      ? `the hand-scheduled step computes the token loss; --objective ${options.objective} is the tape's`
      : options.gradientCheckpointing
        ? "gradient checkpointing (--gradient-checkpointing) is the tape's; the hand-scheduled step keeps its own buffers"
        : scheduledStepUnsupported(model, params, options.packedDocuments === true);
  if (why === null) return { path: 'scheduled', reason: null };
  if (choice === 'scheduled') throw new Error(`LORAFLEET_WEBGPU_STEP=scheduled, but ${why}`);
  return { path: 'tape', reason: why };
}
