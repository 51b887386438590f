// One synchronous data-parallel training step, in DESIGN.md's order:
// (an objective's global-batch sums, all-reduced: KTO's KL estimate) ->
// forward + backward over the micro-batches -> all-reduce of the fused
// gradient -> divide by the global token (or pair) count -> clip -> the optimizer (AdamW by default). With one
// process the all-reduce is the identity.
import {
  type LrSchedule,
  type OptimizerSettings,
  type OptimizerState,
  type SlotLayout,
  type TrainableParameters,
  cloneOptimizerState,
  clipGlobalNorm,
  createOptimizerState,
  globalNorm,
  optimizerStep,
  stateBuffers,
  GradientAccumulator,
  scheduledLr,
  settleDevice,
} from '@lorafleet/core';
import {
  type CausalLM,
  type Objective,
  type ObjectiveSettings,
  type StepGradients,
  type TokenBatch,
  SFT,
  ScheduledGradients,
  chooseStepGradients,
  objectiveOf,
} from '@lorafleet/models';
import { DataError } from './data-error.js';
import { maybePause } from './fault-injection.js';
import { replicaHash } from './replica-hash.js';

/**
 * Called before each micro-batch with the longest it may take and whether
 * that is a first guess (no micro-batch measured yet), and with 0 after the
 * last: the computation's progress, which a worker's heartbeat thread
 * reports, so that a hung micro-batch is told from a long one.
 */
export type ComputeNotice = (computeLimitMs: number, warmingUp?: boolean) => void;

/** Before the first micro-batch is measured: a large model on a slow backend still fits. */
const FIRST_MICRO_BATCH_LIMIT_MS = 300_000;
/** A measured limit is never below this: a loaded machine's jitter is no hang. */
const MIN_MICRO_BATCH_LIMIT_MS = 30_000;

/** What one step runs with, besides its micro-batches (all optional). */
export interface RunOptions {
  /** Stops the step between micro-batches (an Abort); the caller restores its snapshot. */
  signal?: AbortSignal;
  onCompute?: ComputeNotice;
  /** reduce_lr_on_plateau: the reductions the evaluations so far made (StepPlan.lr_reductions). */
  lrReductions?: number;
  /**
   * [micro-batches] each micro-batch's rows as a key (rowsKey of its sample
   * ids), which seeds its dropout masks: the same rows draw the same masks on
   * whichever worker, or at whichever place in the accumulation, they land.
   * Without: the micro-batch's index on this replica.
   */
  rowKeys?: readonly number[];
}

/** Sums a buffer across all replicas in place; every replica must end with the same bits. */
export type AllReduce = (buffer: Float32Array) => Promise<void>;

export const localAllReduce: AllReduce = async () => {};

export interface StepConfig {
  optimizer: OptimizerSettings;
  schedule: LrSchedule;
  /** Global-norm clipping; null turns it off. */
  maxGradNorm: number | null;
  /** Base seed of dropout masks (mixed with the step number). */
  seed: number;
  /** Each parameter's factor of the learning rate (LoRA+: core's loraplusLrScales); absent: 1. */
  lrScales?: Float64Array | null;
  /** NEFTune's alpha (models' neftune.ts): noise on the input embeddings; absent or 0: none. */
  neftuneAlpha?: number;
  /** Recompute each layer in backward instead of keeping its activations (models' ForwardPassOptions). */
  gradientCheckpointing?: boolean;
  /** Each parameter's factor of the weight decay (Trainer's exemptions: core's weightDecayScales); absent: 1. */
  decayScales?: Float64Array | null;
  /** What the step minimises (models' objective.ts); absent: the token loss (SFT). */
  objective?: ObjectiveSettings;
  /** Rows pack documents apart (--packing-strategy bfd, bfd_split): attention within each document. */
  packedDocuments?: boolean;
}

export interface StepResult {
  step: number;
  /** Mean loss over the global batch: per token, or per pair (preference objectives). */
  loss: number;
  /** The loss's units in the global batch: labelled tokens, or pairs (preference objectives). */
  tokens: number;
  /**
   * This replica's share before the all-reduce: its loss sum and loss units,
   * and its sums of the objective's statistics (Objective.stats: a preference
   * step's reward sums; empty for the token loss).
   */
  local: { lossSum: number; tokens: number; stats: Float32Array };
  /** The objective's global-batch sums (Objective.shared: KTO's KL), all-reduced; null where it has none. */
  shared: Float32Array | null;
  lr: number;
  gradNorm: number;
  /** Wall-clock split of the step, in seconds. */
  timings: { compute: number; allReduce: number; update: number };
  /** False when the gradient was not finite: the update was skipped. */
  applied: boolean;
}

/** What a snapshot or checkpoint holds: parameters and optimizer state. */
export interface TrainState {
  values: Float32Array;
  optimizer: OptimizerState;
}

/** A step's micro-batch sums on the device: tfjs's tape, or the hand-scheduled step. */
interface GradientSums {
  /** `shared`: the objective's global-batch sums (Objective.shared), where it reads them. */
  add(batch: TokenBatch, seed: number, shared?: Float32Array): void;
  take(): Promise<{ grads: Float32Array; loss: number; stats: Float32Array }>;
  /** Drops what was added and not taken (an aborted step). */
  release(): void;
}

export class TrainingStep {
  readonly params: TrainableParameters;
  /** How gradients are computed (LORAFLEET_WEBGPU_STEP), and why not the scheduled step. */
  readonly gradients: { path: StepGradients; reason: string | null };
  private values: Float32Array;
  private optimizer: OptimizerState;
  private readonly layout: SlotLayout[];
  private readonly grads: Float32Array;
  private readonly scheduled: ScheduledGradients | null;
  readonly objective: Objective;

  constructor(
    private readonly model: CausalLM,
    params: TrainableParameters,
    private readonly config: StepConfig,
    private readonly allReduce: AllReduce = localAllReduce,
    /** The parameters' values now (read them with readParametersAsync where they may live on a GPU). */
    values: Float32Array = params.read(),
  ) {
    this.params = params;
    this.values = values;
    this.layout = params.layout;
    this.optimizer = createOptimizerState(config.optimizer, this.layout);
    // Gradient, then loss sum and token count: one buffer, one all-reduce.
    this.grads = new Float32Array(params.size + 2);
    this.objective = objectiveOf(config.objective ?? SFT);
    this.gradients = chooseStepGradients(model, params, undefined, {
      gradientCheckpointing: config.gradientCheckpointing === true,
      objective: this.objective.settings.kind,
      packedDocuments: config.packedDocuments === true,
    });
    this.scheduled =
      this.gradients.path === 'scheduled'
        ? new ScheduledGradients(model, params, { neftuneAlpha: config.neftuneAlpha ?? 0 })
        : null;
  }

  /** Whether each layer is recomputed in backward (--gradient-checkpointing). */
  get recomputesLayers(): boolean {
    return this.config.gradientCheckpointing === true;
  }

  /** Frees the scheduled step's device buffers (the tape keeps none between steps). */
  dispose(): void {
    this.scheduled?.dispose();
  }

  private sums(): GradientSums {
    if (this.scheduled) {
      const s = this.scheduled;
      return {
        add: (batch, seed) => s.add(batch, seed),
        // The scheduled step computes the token loss only (chooseStepGradients), with its TOKEN_STATS.
        take: () => s.take(),
        release: () => s.reset(),
      };
    }
    const acc = new GradientAccumulator(this.params, this.objective.stats.length);
    return {
      add: (batch, seed, shared) => {
        const { neftuneAlpha, gradientCheckpointing } = this.config;
        const pass = { training: true, seed, neftuneAlpha, gradientCheckpointing };
        const loss = this.objective.loss(this.model, batch, pass, shared);
        try {
          acc.add(
            () => loss.sum(),
            () => loss.stats(),
          );
        } finally {
          loss.dispose();
        }
      },
      take: () => acc.take(),
      release: () => acc.dispose(),
    };
  }

  /** The slowest micro-batch of the last step (0: none computed yet). */
  private slowestMicroBatchMs = 0;

  /**
   * The longest one micro-batch may take before it counts as hung (the
   * default of the coordinator's --step-timeout): ten times the slowest of
   * the last step, at least 30 s, or a generous first guess before any was measured.
   */
  computeLimitMs(): number {
    return this.slowestMicroBatchMs > 0
      ? Math.max(MIN_MICRO_BATCH_LIMIT_MS, Math.ceil(10 * this.slowestMicroBatchMs))
      : FIRST_MICRO_BATCH_LIMIT_MS;
  }

  /** No micro-batch measured yet: the next one compiles kernels and fills caches. */
  get warmingUp(): boolean {
    return this.slowestMicroBatchMs === 0;
  }

  /** Optimizer steps taken so far. */
  get stepsDone(): number {
    return this.optimizer.step;
  }

  /**
   * One step over this replica's micro-batches. Between micro-batches it yields
   * to the event loop (heartbeats, an Abort) and stops with `signal`'s reason
   * when aborted; the caller then restores its step-start snapshot.
   */
  async run(microBatches: readonly TokenBatch[], options: RunOptions = {}): Promise<StepResult> {
    const { signal, onCompute, lrReductions = 0 } = options;
    const step = this.optimizer.step;
    const n = this.params.size;
    const fused = this.grads;
    const t0 = performance.now();
    const shared = await this.sharedSums(microBatches, step + 1, signal, onCompute);
    const stats = await this.accumulate(microBatches, step, options, shared);
    onCompute?.(0);
    const t1 = performance.now();
    const local = { lossSum: fused[n]!, tokens: fused[n + 1]!, stats };
    signal?.throwIfAborted();
    await this.allReduce(fused);
    signal?.throwIfAborted();
    const t2 = performance.now();
    const tokens = fused[n + 1]!;
    if (tokens === 0)
      throw new DataError(`step ${step + 1}: the batch has no labelled ${this.objective.unit}`);
    const grads = fused.subarray(0, n);
    for (let j = 0; j < n; j++) grads[j] = grads[j]! / tokens;
    const gradNorm =
      this.config.maxGradNorm === null
        ? globalNorm(grads)
        : clipGlobalNorm(grads, this.config.maxGradNorm);
    const lr = scheduledLr(this.config.optimizer.lr, this.config.schedule, step, lrReductions);
    const applied = Number.isFinite(gradNorm);
    if (applied) {
      optimizerStep(this.values, grads, this.optimizer, this.config.optimizer, {
        lr,
        lrScales: this.config.lrScales ?? null,
        decayScales: this.config.decayScales ?? null,
        layout: this.layout,
      });
      this.params.write(this.values);
    }
    const t3 = performance.now();
    return {
      step: step + 1,
      loss: fused[n]! / tokens,
      tokens,
      local,
      shared: shared ?? null,
      lr,
      gradNorm,
      timings: { compute: (t1 - t0) / 1000, allReduce: (t2 - t1) / 1000, update: (t3 - t2) / 1000 },
      applied,
    };
  }

  /**
   * The objective's sums over the whole global batch (Objective.shared: KTO's
   * KL estimate), before any gradient: each micro-batch's, added here and
   * all-reduced across the replicas (in the run's wire dtype, as the
   * gradient); undefined where the objective reads none.
   */
  private async sharedSums(
    microBatches: readonly TokenBatch[],
    step: number,
    signal?: AbortSignal,
    onCompute?: ComputeNotice,
  ): Promise<Float32Array | undefined> {
    const shared = this.objective.shared;
    if (!shared) return undefined;
    const total = new Float32Array(shared.size);
    for (const batch of microBatches) {
      await yieldToEventLoop();
      signal?.throwIfAborted();
      if (this.objective.count(batch) === 0) continue;
      onCompute?.(this.computeLimitMs(), this.warmingUp);
      (await shared.sums(this.model, batch)).forEach((v, i) => (total[i]! += v));
    }
    onCompute?.(0);
    await maybePause('shared', step); // a test hook: a worker lost right before this all-reduce
    signal?.throwIfAborted();
    await this.allReduce(total);
    return total;
  }

  /**
   * Forward and backward over the micro-batches, summed on the device and
   * read once into the fused buffer [grads, loss sum, units]; returns the
   * objective's statistics, summed alike.
   */
  private async accumulate(
    microBatches: readonly TokenBatch[],
    step: number,
    { signal, onCompute, rowKeys }: RunOptions,
    shared?: Float32Array,
  ): Promise<Float32Array> {
    const n = this.params.size;
    let slowest = 0;
    let units = 0;
    const sums = this.sums();
    try {
      for (const [i, batch] of microBatches.entries()) {
        await yieldToEventLoop();
        signal?.throwIfAborted();
        const count = this.objective.count(batch);
        if (count === 0) continue;
        // Timed from here: a test hook's blocking (fault-injection.ts) counts as compute.
        const started = performance.now();
        onCompute?.(this.computeLimitMs(), this.warmingUp);
        const seed = (this.config.seed * 1_000_003 + step * 1009 + (rowKeys?.[i] ?? i)) >>> 0;
        sums.add(batch, seed, shared);
        await settleDevice(); // the micro-batch's device work is done: its time is its compute
        units += count;
        slowest = Math.max(slowest, performance.now() - started);
      }
      // Asynchronous: the only read a GPU backend (webgpu under Node) allows.
      const { grads, loss, stats } = await sums.take();
      this.grads.set(grads);
      this.grads[n] = loss;
      this.grads[n + 1] = units;
      if (slowest > 0) this.slowestMicroBatchMs = slowest;
      return stats;
    } finally {
      sums.release();
    }
  }

  /** Parameters that are NaN or infinite: more than zero means the run diverged. */
  nonFiniteParameters(): number {
    let n = 0;
    for (const v of this.values) if (!Number.isFinite(v)) n++;
    return n;
  }

  /** replicaHash() of the current parameters: equal on every replica of a healthy run. */
  parameterHash(): Uint8Array {
    return replicaHash(this.values);
  }

  /** The run's optimizer state buffers: torch's names and their fused lengths. */
  stateSizes(): { name: string; length: number }[] {
    return stateBuffers(this.config.optimizer, this.layout);
  }

  /** A copy of parameters and optimizer state (the step-start snapshot, checkpoints). */
  snapshot(): TrainState {
    return { values: this.values.slice(), optimizer: cloneOptimizerState(this.optimizer) };
  }

  restore(state: TrainState): void {
    if (state.values.length !== this.params.size) {
      throw new Error(
        `cannot restore: the state holds ${state.values.length} parameters, the model trains ${this.params.size}`,
      );
    }
    for (const { name, length } of this.stateSizes()) {
      const held = state.optimizer.buffers[name]?.length;
      if (held !== length)
        throw new Error(
          `cannot restore: the optimizer state "${name}" holds ${held ?? 'no'} values, this run's optimizer keeps ${length}`,
        );
    }
    this.values = state.values.slice();
    this.optimizer = cloneOptimizerState(state.optimizer);
    this.params.write(this.values);
  }
}

/** Lets timers and socket callbacks run (a resolved promise would not: that is a microtask). */
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));
