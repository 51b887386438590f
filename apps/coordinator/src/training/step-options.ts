// The batch, step-count and optimizer options that the one-process and the
// distributed `train` read the same way.
import { type AdamWOptions, type LrSchedule, validateSchedule } from '@lorafleet/core';
import { GlobalBatchSampler } from '@lorafleet/data';
import { UsageError } from '../args.js';
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

export function stepOptionsFrom(o: TrainOptions, datasetSize: number): StepOptions {
  const batchSize = o.batchSize;
  const microBatchSize = o.microBatchSize ?? batchSize;
  if (microBatchSize > batchSize) {
    throw new UsageError(
      `train: --micro-batch-size (${microBatchSize}) exceeds --batch-size (${batchSize})`,
    );
  }
  const sampler = new GlobalBatchSampler({
    datasetSize,
    seed: o.seed,
    globalBatchSize: batchSize,
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
