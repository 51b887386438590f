// The lines a run starts with: the data, the model, what trains, the
// objective, the batches and the optimizer, as resolved from the options.
import {
  type BaseDtype,
  type OptimizerKind,
  type OptimizerOptionsOf,
  type OptimizerSettings,
  optimizerTitle,
} from '@lorafleet/core';
import type { SamplingStrategy } from '@lorafleet/data';
import { familyOf, hasReference } from '@lorafleet/models';
import type { RunConfig } from '@lorafleet/worker';
import { formatCount } from '../common.js';
import { describeLora } from '../training/peft-options.js';
import { REFERENCES, describeObjective } from '../training/objective-describe.js';
import type { StartPoint } from './checkpoints.js';
import type { Membership } from './fleet.js';
import type { RunPlan } from './run-plan.js';

const log = (line: string) => console.log(line);
const warn = (line: string) => console.warn(`warning: ${line}`);

/** "worker" or "workers". */
export const workerNoun = (n: number) => (n === 1 ? 'worker' : 'workers');

function where(membership: Membership): string {
  return membership.kind === 'inprocess'
    ? '1 worker in this process'
    : `${membership.workers} ${workerNoun(membership.workers)}`;
}

/** How the frozen linear weights are held, for the "training:" line (empty for plain f32). */
function baseNote(baseDtype: BaseDtype, bnbFolder: boolean): string {
  if (bnbFolder) {
    return baseDtype === 'nf4'
      ? "; frozen linear weights stored as nf4, the folder's bitsandbytes 4-bit bytes as they are"
      : `; frozen linear weights stored as ${baseDtype}, dequantized from the folder's bitsandbytes NF4`;
  }
  return baseDtype === 'f32' ? '' : `; frozen linear weights stored as ${baseDtype}`;
}

export function describeRun(plan: RunPlan, membership: Membership, start: StartPoint): void {
  const { config, steps, batchSize, microBatchSize, sampler } = plan;
  if (start.resumed) log(`resuming from ${start.resumed.dir} at step ${start.step}`);
  plan.warnings.forEach(warn);
  log(`data: ${config.dataFile}: ${plan.dataDescription}`);
  if (plan.evalDescription) {
    const batches =
      plan.evalBatchSize === microBatchSize ? '' : `; batches of ${plan.evalBatchSize}`;
    log(
      `eval data: ${config.evalData?.file ?? config.dataFile}: ${plan.evalDescription}${batches}`,
    );
  }
  const part = familyOf(plan.modelConfig).computes;
  log(
    `model: ${config.modelDir} (${formatCount(plan.totalParameters)} parameters, context ${plan.modelConfig.contextLength}, ` +
      `vocab ${plan.modelConfig.vocabSize}${part ? `; ${part}` : ''}) on ${where(membership)} (${plan.backend})`,
  );
  const share = `${((100 * plan.trainableParameters) / plan.totalParameters).toFixed(2)}% of ${formatCount(plan.totalParameters)}`;
  log(
    config.mode === 'full'
      ? `training: full fine-tune, ${formatCount(plan.trainableParameters)} trainable parameters`
      : `training: LoRA r=${config.lora.r} alpha=${config.lora.alpha} on ${describeLora(config.lora)}, ` +
          `${formatCount(plan.trainableParameters)} trainable parameters (${share})` +
          (config.loraplusLrRatio ? `; LoRA+: B learns at ${config.loraplusLrRatio}x --lr` : '') +
          baseNote(config.baseDtype, plan.modelConfig.bnbNf4 === true) +
          (config.initAdapter ? `; starting from the adapter ${config.initAdapter}` : '') +
          (config.neftuneAlpha ? `; NEFTune noise alpha ${config.neftuneAlpha}` : ''),
  );
  if (config.objective) {
    const objective = config.objective;
    const reference =
      hasReference(objective.kind) && config.initAdapter
        ? `against a frozen copy of the adapter it starts from (${config.initAdapter})`
        : REFERENCES[objective.kind];
    log(`objective: ${describeObjective(objective)}, ${reference}; no dropout`);
  }
  const rowsEach = Math.ceil(Math.min(batchSize, sampler.datasetSize) / membership.workers);
  const perWorker = membership.workers > 1 ? `, ~${rowsEach} ${rowNoun(config)} per worker` : '';
  log(
    `${steps} steps of ${Math.min(batchSize, sampler.datasetSize)} ${rowNoun(config)} x ` +
      `${config.rows.pairs || config.rows.kto ? `2 x ${config.rows.seqLen}` : config.rows.seqLen} tokens ` +
      // A worker's micro-batch holds at most its share of the step.
      `(${(steps / sampler.stepsPerEpoch).toFixed(2)} epochs)${perWorker}, micro-batches of ${Math.min(microBatchSize, rowsEach)}` +
      (config.gradientCheckpointing ? ', gradient checkpointing' : '') +
      SAMPLING_NOTES[sampler.strategy],
  );
  log(describeOptimizer(config));
  idleWorkers(Math.min(batchSize, sampler.datasetSize), membership.workers, rowNoun(config));
}

/** Warns when a step's rows are fewer than the workers: some train nothing and every step waits on them. */
function idleWorkers(rows: number, workers: number, noun: string): void {
  if (rows >= workers) return;
  // "rows", "pairs", "examples": one of each is the noun less its s.
  warn(
    `a step's ${rows} ${rows === 1 ? noun.slice(0, -1) : noun} leave ${workers - rows} of the ${workers} workers with none: ` +
      `they train nothing and every step still waits on them; raise --batch-size to ${workers} ` +
      `(or a multiple of it) or run ${rows} ${workerNoun(rows)}`,
  );
}

/** "optimizer: AdamW lr 0.0002 (linear, 10 warmup steps), betas 0.9/0.999, eps 1e-8, ...". */
function describeOptimizer({ optimizer: o, schedule, maxGradNorm }: RunConfig): string {
  const p = schedule.plateau;
  const warmup = p
    ? ` on evaluations: x${p.factor} after ${p.patience + 1} without improvement`
    : schedule.warmupSteps
      ? `, ${schedule.warmupSteps} warmup steps`
      : '';
  const own = (OPTIMIZER_DETAILS[o.kind] as (s: OptimizerSettings) => string)(o);
  return (
    `optimizer: ${optimizerTitle(o)} lr ${o.lr} (${schedule.kind}${warmup}), ${own}` +
    `weight decay ${o.weightDecay}, ` +
    (maxGradNorm === null ? 'no clipping' : `gradients clipped at norm ${maxGradNorm}`)
  );
}

/** Each optimizer's own settings, as the optimizer line says them (each ends ", "). */
const OPTIMIZER_DETAILS: { [K in OptimizerKind]: (o: OptimizerOptionsOf[K]) => string } = {
  adamw: (o) => `betas ${o.beta1}/${o.beta2}, eps ${o.eps}, `,
  sgd: (o) =>
    o.momentum === 0
      ? ''
      : `momentum ${o.momentum}${o.dampening ? `, dampening ${o.dampening}` : ''}${o.nesterov ? ' (Nesterov)' : ''}, `,
  adagrad: (o) => `${o.lrDecay ? `lr decay ${o.lrDecay}, ` : ''}eps ${o.eps}, `,
  rmsprop: (o) => `alpha ${o.alpha}, eps ${o.eps}, ${o.momentum ? `momentum ${o.momentum}, ` : ''}`,
  adafactor: (o) =>
    `factored second moments, update clipped at RMS ${o.clipThreshold}, decay rate ${o.decayRate}, `,
  lion: (o) => `betas ${o.beta1}/${o.beta2}, `,
};

/** How the "N steps of ..." line says each epoch's order. */
const SAMPLING_NOTES: Record<SamplingStrategy, string> = {
  random: '',
  group_by_length: ', batches grouped by length (longest first)',
  sequential: ', rows in file order',
};

/** What one row of the run holds, for the log. */
const rowNoun = (config: RunPlan['config']): string =>
  config.rows.pairs ? 'pairs' : config.rows.kto ? 'examples' : 'rows';
