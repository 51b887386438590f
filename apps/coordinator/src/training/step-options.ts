// The batch, step-count and optimizer options that the one-process and the
// distributed `train` read the same way.
import { type AdamWOptions, type LrSchedule, validateSchedule } from '@lorafleet/core';
import { GlobalBatchSampler } from '@lorafleet/data';
import { type Options, UsageError } from '../args.js';

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

export function stepOptionsFrom(o: Options, datasetSize: number): StepOptions {
  const batchSize = o.number('batch-size');
  const microBatchSize = o.optionalNumber('micro-batch-size') ?? batchSize;
  if (microBatchSize > batchSize) {
    throw new UsageError(
      `train: --micro-batch-size (${microBatchSize}) exceeds --batch-size (${batchSize})`,
    );
  }
  const sampler = new GlobalBatchSampler({
    datasetSize,
    seed: o.number('seed'),
    globalBatchSize: batchSize,
  });
  if (o.has('steps') && o.has('epochs'))
    throw new UsageError('train: give --steps or --epochs, not both');
  const steps =
    o.optionalNumber('steps') ??
    Math.max(1, Math.round((o.optionalNumber('epochs') ?? 1) * sampler.stepsPerEpoch));
  const warmupSteps = o.number('warmup-steps');
  const kind = o.string('schedule');
  const schedule: LrSchedule =
    kind === 'constant'
      ? { kind: 'constant', warmupSteps }
      : { kind: kind as 'linear' | 'cosine', warmupSteps, totalSteps: steps };
  validateSchedule(schedule);
  const maxGradNorm = o.number('max-grad-norm');
  return {
    batchSize,
    microBatchSize,
    sampler,
    steps,
    schedule,
    optimizer: {
      lr: o.number('lr'),
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: o.number('weight-decay'),
    },
    maxGradNorm: maxGradNorm > 0 ? maxGradNorm : null,
  };
}
