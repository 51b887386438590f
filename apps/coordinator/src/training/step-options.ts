// The batch, step-count and optimizer options that the one-process and the
// distributed `train` read the same way.
import {
  type LrSchedule,
  type OptimizerSettings,
  type ScheduleKind,
  stateFloatsPerValue,
  validateSchedule,
} from '@lorafleet/core';
import { optimizerFrom } from './optimizer-settings.js';
import { scheduleFrom } from './schedule-options.js';
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
  optimizer: OptimizerSettings;
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
  const optimizer = optimizerFrom(o).settings;
  const microBatchSize = chooseMicroBatch(
    o.microBatchSize,
    Math.min(batchSize, datasetSize),
    memory && withOptimizerState(memory, optimizer),
  );
  if (microBatchSize > batchSize) {
    throw new UsageError(
      `train: --micro-batch-size (${microBatchSize}) exceeds --batch-size (${batchSize})`,
    );
  }
  const sampler = new GlobalBatchSampler({
    datasetSize,
    seed: o.dataSeed ?? o.seed,
    globalBatchSize: batchSize,
    lastBatch: o.dataloaderDropLast ? 'drop' : 'short',
    strategy: o.trainSamplingStrategy as SamplingStrategy,
    lengths,
  });
  if (o.steps !== undefined && o.epochs !== undefined)
    throw new UsageError('train: give --steps or --epochs, not both');
  const steps = o.steps ?? Math.max(1, Math.round((o.epochs ?? 1) * sampler.stepsPerEpoch));
  const warmupSteps = warmupStepsOf(o.warmupSteps, steps);
  const schedule = scheduleFrom(o.schedule as ScheduleKind, o.lrSchedulerKwargs, {
    warmupSteps,
    totalSteps: steps,
    lr: o.lr,
  });
  try {
    validateSchedule(schedule);
  } catch (error) {
    throw new UsageError(`train: ${(error as Error).message} (--schedule, --lr-scheduler-kwargs)`);
  }
  const maxGradNorm = o.maxGradNorm;
  return {
    batchSize,
    microBatchSize,
    sampler,
    steps,
    schedule,
    optimizer,
    maxGradNorm: maxGradNorm > 0 ? maxGradNorm : null,
  };
}

/** `memory` with the optimizer's state per weight, which full fine-tuning keeps (for a C x C weight). */
function withOptimizerState(memory: MicroBatchMemory, optimizer: OptimizerSettings) {
  const C = memory.config.hiddenSize;
  return { ...memory, optimizerFloats: stateFloatsPerValue(optimizer, [C, C]) };
}

/** --warmup-steps as transformers reads warmup_steps: whole steps, or below 1 a share of `steps`, rounded up. */
function warmupStepsOf(given: number, steps: number): number {
  if (given < 1) return Math.ceil(given * steps);
  if (!Number.isInteger(given))
    throw new UsageError(
      `train: --warmup-steps ${given}: give whole steps, or a share of the steps below 1 (0.1: a tenth)`,
    );
  return given;
}

/** Where the batch order or the schedule is not what a transformers user would expect. */
export function stepWarnings(o: TrainOptions, lengths: Uint32Array): string[] {
  const warnings = [samplingWarning(o, lengths), ...optimizerFrom(o).warnings];
  if (o.schedule === 'constant' && o.warmupSteps > 0)
    warnings.push(
      "--schedule constant warms up over --warmup-steps here, as transformers' constant_with_warmup (its constant ignores warmup_steps)",
    );
  return warnings.filter((w) => w !== null);
}

/** Why --train-sampling-strategy group_by_length saves no padding on these rows, if it does not. */
function samplingWarning(o: TrainOptions, lengths: Uint32Array): string | null {
  if (o.trainSamplingStrategy !== 'group_by_length') return null;
  if (o.padding === 'max_length') {
    return '--train-sampling-strategy group_by_length saves no compute with --padding max_length (every row is --seq-len long); use --padding longest';
  }
  if (lengths.every((length) => length === lengths[0])) {
    return `--train-sampling-strategy group_by_length changes nothing here: every training row has ${lengths[0]} tokens (text packed into full rows)`;
  }
  return null;
}
