// The deterministic sampler: which rows make each step's global batch.
//
// Each epoch visits the N row ids in a fresh order, a pure function of
// (seed, epoch): shuffled ('random', the default), grouped by length
// ('group_by_length': length-grouped.ts) or 0..N-1 ('sequential'), the
// three orders of transformers' `train_sampling_strategy`. A step takes the next G ids of that order, so every id
// appears exactly once per epoch. The last batch of an epoch is short
// (N mod G ids) by default, or dropped ('drop': those ids skip that epoch).
// Batches never straddle epochs.
//
// The position is (epoch, cursor), plain JSON: `plan(state)` is pure, so a
// coordinator can plan a step, and then either commit `next` or abort and
// plan the same batch again; restoring a saved state replays the same future.

import { lengthGroupedOrder } from './length-grouped.js';
import { checkSeed, mixSeed, permutation } from './random.js';

/** How each epoch orders the row ids (transformers' `train_sampling_strategy`). */
export type SamplingStrategy = 'random' | 'group_by_length' | 'sequential';

/** Epoch `epoch`'s order of the ids 0..N-1 under each strategy. */
const EPOCH_ORDERS: Record<
  SamplingStrategy,
  (sampler: GlobalBatchSampler, epoch: number) => Uint32Array
> = {
  random: (s, epoch) => permutation(s.datasetSize, mixSeed(s.seed, epoch)),
  group_by_length: (s, epoch) =>
    lengthGroupedOrder(EPOCH_ORDERS.random(s, epoch), s.lengths!, s.globalBatchSize),
  sequential: (s) => Uint32Array.from({ length: s.datasetSize }, (_, i) => i),
};

export interface SamplerConfig {
  datasetSize: number; // N rows
  seed: number; // integer in [0, 2^32)
  globalBatchSize: number; // G ids per step, over all ranks
  /** The epoch's last N mod G ids: a short batch (default) or dropped. */
  lastBatch?: 'short' | 'drop';
  /** The order of each epoch (default 'random'). */
  strategy?: SamplingStrategy;
  /** [N] each row's length in tokens: what 'group_by_length' groups by. */
  lengths?: ArrayLike<number>;
}

/** Where the sampler stands: the epoch and how many ids of its order are used. */
export interface SamplerState {
  epoch: number;
  cursor: number;
}

export const SAMPLER_START: Readonly<SamplerState> = Object.freeze({ epoch: 0, cursor: 0 });

/** One step's global batch and the state after it. */
export interface PlannedBatch {
  epoch: number;
  ids: number[]; // row indices, in order; shard() splits them among ranks
  next: SamplerState;
}

export class GlobalBatchSampler {
  readonly datasetSize: number;
  readonly seed: number;
  readonly globalBatchSize: number;
  readonly lastBatch: 'short' | 'drop';
  readonly strategy: SamplingStrategy;
  readonly lengths: ArrayLike<number> | undefined;
  private cached: { epoch: number; order: Uint32Array } | undefined;

  constructor(config: SamplerConfig) {
    const { datasetSize: n, globalBatchSize: g, lastBatch = 'short', strategy = 'random' } = config;
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 32) {
      throw new RangeError(`datasetSize must be an integer in [1, 2^32], got ${n}`);
    }
    if (!Number.isInteger(g) || g < 1) {
      throw new RangeError(`globalBatchSize must be an integer >= 1, got ${g}`);
    }
    if (lastBatch === 'drop' && g > n) {
      throw new RangeError(
        `globalBatchSize ${g} exceeds datasetSize ${n} with lastBatch 'drop': no full batch ` +
          `exists; use lastBatch 'short' or a smaller batch`,
      );
    }
    if (strategy === 'group_by_length' && config.lengths?.length !== n) {
      throw new RangeError(
        `strategy 'group_by_length' needs the length of each of the ${n} rows, ` +
          `got ${config.lengths?.length ?? 'no'} lengths`,
      );
    }
    this.datasetSize = n;
    this.seed = checkSeed(config.seed);
    this.globalBatchSize = g;
    this.lastBatch = lastBatch;
    this.strategy = strategy;
    this.lengths = config.lengths;
  }

  /** Steps in one epoch (every epoch has the same number). */
  get stepsPerEpoch(): number {
    const whole = Math.floor(this.datasetSize / this.globalBatchSize);
    return this.lastBatch === 'drop' || this.datasetSize % this.globalBatchSize === 0
      ? whole
      : whole + 1;
  }

  /** The order in which epoch `epoch` visits the row ids. Do not modify it. */
  epochOrder(epoch: number): Uint32Array {
    if (this.cached?.epoch !== epoch) {
      this.cached = { epoch, order: EPOCH_ORDERS[this.strategy](this, epoch) };
    }
    return this.cached.order;
  }

  /** The batch at `state` and the state after it. Same state, same answer. */
  plan(state: SamplerState): PlannedBatch {
    let { epoch, cursor } = this.checkState(state);
    if (this.epochDoneAt(cursor)) {
      epoch++;
      cursor = 0;
    }
    const end = Math.min(cursor + this.globalBatchSize, this.datasetSize);
    const ids = Array.from(this.epochOrder(epoch).subarray(cursor, end));
    const next = this.epochDoneAt(end) ? { epoch: epoch + 1, cursor: 0 } : { epoch, cursor: end };
    return { epoch, ids, next };
  }

  /** Batches from `state` on, forever (the trainer decides when to stop). */
  *batches(state: SamplerState = SAMPLER_START): Generator<PlannedBatch, never> {
    for (;;) {
      const planned = this.plan(state);
      yield planned;
      state = planned.next;
    }
  }

  /** The state before global step `step` (0-based) of a run that began at SAMPLER_START. */
  stateAtStep(step: number): SamplerState {
    if (!Number.isInteger(step) || step < 0) {
      throw new RangeError(`step must be a non-negative integer, got ${step}`);
    }
    const perEpoch = this.stepsPerEpoch;
    return {
      epoch: Math.floor(step / perEpoch),
      cursor: (step % perEpoch) * this.globalBatchSize,
    };
  }

  /** True when no batch can start at `cursor` in this epoch. */
  private epochDoneAt(cursor: number): boolean {
    const left = this.datasetSize - cursor;
    return left === 0 || (this.lastBatch === 'drop' && left < this.globalBatchSize);
  }

  private checkState(state: SamplerState): SamplerState {
    const { epoch, cursor } = state;
    if (!Number.isInteger(epoch) || epoch < 0 || epoch >= 2 ** 32 - 1) {
      throw new RangeError(`sampler state epoch must be an integer in [0, 2^32 - 1), got ${epoch}`);
    }
    if (!Number.isInteger(cursor) || cursor < 0 || cursor > this.datasetSize) {
      throw new RangeError(
        `sampler state cursor must be an integer in [0, ${this.datasetSize}], got ${cursor}; ` +
          `was the state saved for a different dataset?`,
      );
    }
    return { epoch, cursor };
  }
}
