// The batch, step-count and optimizer options that the one-process and the
// distributed `train` read the same way.
import { type AdamWOptions, type LrSchedule, validateSchedule } from '@lorafleet/core';
import { GlobalBatchSampler, type SamplingStrategy } from '@lorafleet/data';
import { UsageError } from '../args.js';
import { type MicroBatchMemory, chooseMicroBatch } from './micro-batch.js';
import type { TrainOptions } from './train-spec.js';

export interface StepOptions {
  batchSize: number;
  microBatchSize: number;
  sampler: GlobalBatchSampler;
  steps: number;
  schedule: LrSchedule;
  optimizer: AdamWOptions;
  /** null: no clipping (--max-grad-norm 0). */
  maxGradNorm: number | null;
}

/** `lengths`: [N] each training row's length after padding (what group_by_length groups by). */
export function stepOptionsFrom(
  o: TrainOptions,
  lengths: Uint32Array,
  memory?: MicroBatchMemory,
): StepOptions {
  const datasetSize = lengths.length;
  const batchSize = o.batchSize;
  if (datasetSize < batchSize) {
    console.error(
      `warning: --batch-size ${batchSize} is more than the ${datasetSize} training rows: each step trains on ${datasetSize}`,
    );
  }
  const microBatchSize = chooseMicroBatch(
    o.microBatchSize,
    Math.min(batchSize, datasetSize),
    memory,
  );
  if (microBatchSize > batchSize) {
    throw new UsageError(
      `train: --micro-batch-size (${microBatchSize}) exceeds --batch-size (${batchSize})`,
    );
  }
  const sampler = new GlobalBatchSampler({
    datasetSize,
    seed: o.seed,
    globalBatchSize: batchSize,
    strategy: o.trainSamplingStrategy as SamplingStrategy,
    lengths,
  });
  if (o.steps !== undefined && o.epochs !== undefined)
    throw new UsageError('train: give --steps or --epochs, not both');
  const steps = o.steps ?? Math.max(1, Math.round((o.epochs ?? 1) * sampler.stepsPerEpoch));
  const warmupSteps = o.warmupSteps;
  const kind = o.schedule;
  const schedule: LrSchedule =
    kind === 'constant'
      ? { kind: 'constant', warmupSteps }
      : { kind: kind as 'linear' | 'cosine', warmupSteps, totalSteps: steps };
  validateSchedule(schedule);
  const maxGradNorm = o.maxGradNorm;
  return {
    batchSize,
    microBatchSize,
    sampler,
    steps,
    schedule,
    optimizer: {
      lr: o.lr,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: o.weightDecay,
    },
    maxGradNorm: maxGradNorm > 0 ? maxGradNorm : null,
  };
}

/** Why --train-sampling-strategy group_by_length saves no padding on these rows, if it does not. */
export function samplingWarning(o: TrainOptions, lengths: Uint32Array): string | null {
  if (o.trainSamplingStrategy !== 'group_by_length') return null;
  if (o.padding === 'max_length') {
    return '--train-sampling-strategy group_by_length saves no compute with --padding max_length (every row is --seq-len long); use --padding longest';
  }
  if (lengths.every((length) => length === lengths[0])) {
    return `--train-sampling-strategy group_by_length changes nothing here: every training row has ${lengths[0]} tokens (text packed into full rows)`;
  }
  return null;
}
