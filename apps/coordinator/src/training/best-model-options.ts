// The options of --load-best-model-at-end and --early-stopping-patience
// (transformers' names), and the settings made of them once: which metric,
// the patience and threshold, and the checkpoint interval they need. The
// tracker that applies them at each evaluation: best-model.ts.
import { UsageError, defineOptions } from '../args.js';
import { type BestMetric, METRICS } from './best-model.js';
import type { TrainOptions } from './train-spec.js';

export const bestModelOptions = defineOptions({
  'load-best-model-at-end': {
    aliases: ['load_best_model_at_end'],
    kind: 'boolean',
    description:
      "save as OUT/adapter the checkpoint of the evaluation with the best held-out metric (--metric-for-best-model; the last evaluation included), not the last step's; needs --eval-every and held-out data; checkpoints at every evaluation unless --checkpoint-every says otherwise",
  },
  'metric-for-best-model': {
    aliases: ['metric_for_best_model'],
    kind: 'string',
    value: 'NAME',
    description:
      "what --load-best-model-at-end and --early-stopping-patience compare: loss (default, lower is better), mean_token_accuracy for the token loss and DPO, or for a preference objective rewards/accuracies or rewards/margins (higher is better; TRL's eval log names)",
  },
  'early-stopping-patience': {
    aliases: ['early_stopping_patience'],
    kind: 'int',
    min: 1,
    description:
      "stop after this many evaluations in a row (--eval-every) that do not improve on the best held-out metric by more than --early-stopping-threshold (transformers' EarlyStoppingCallback)",
  },
  'early-stopping-threshold': {
    aliases: ['early_stopping_threshold'],
    kind: 'number',
    min: 0,
    description:
      'with --early-stopping-patience: how much an evaluation must improve on the best (default: 0)',
  },
});

/** --metric-for-best-model's value: one of METRICS, with or without transformers' "eval_". */
export function bestMetric(o: TrainOptions): BestMetric {
  const name = (o.metricForBestModel ?? 'loss').replace(/^eval_/, '');
  if (!Object.hasOwn(METRICS, name))
    throw new UsageError(
      `train: --metric-for-best-model ${o.metricForBestModel}: give ${Object.keys(METRICS).join(', ')}`,
    );
  const metric = name as BestMetric;
  if (!METRICS[metric].objectives.includes(o.objective))
    throw new UsageError(
      `train: --metric-for-best-model ${metric} is not measured by --objective ${o.objective}: ` +
        `give one of ${listFor(o.objective)}`,
    );
  return metric;
}

const listFor = (objective: TrainOptions['objective']) =>
  (Object.keys(METRICS) as BestMetric[])
    .filter((m) => METRICS[m].objectives.includes(objective))
    .join(', ');

export interface BestModelSettings {
  metric: BestMetric;
  /** Save the best evaluated step's checkpoint as the result. */
  loadAtEnd: boolean;
  /** Misses in a row that stop the run; null: never stop early. */
  patience: number | null;
  threshold: number;
}

/**
 * The settings, and the checkpoint interval they need: with
 * --load-best-model-at-end every evaluated step must have its checkpoint, so
 * --checkpoint-every defaults to --eval-every and must divide it.
 */
export function bestModelSettings(o: TrainOptions): {
  settings: BestModelSettings | null;
  checkpointEvery: number;
  warnings: string[];
} {
  const loadAtEnd = o.loadBestModelAtEnd === true;
  const patience = o.earlyStoppingPatience ?? null;
  if (o.earlyStoppingThreshold !== undefined && patience === null)
    throw new UsageError('train: --early-stopping-threshold needs --early-stopping-patience');
  if (!loadAtEnd && patience === null) {
    if (o.metricForBestModel !== undefined && o.schedule !== 'reduce_lr_on_plateau')
      throw new UsageError(
        'train: --metric-for-best-model needs --load-best-model-at-end, --early-stopping-patience or --schedule reduce_lr_on_plateau',
      );
    return { settings: null, checkpointEvery: o.checkpointEvery, warnings: [] };
  }
  const metric = bestMetric(o);
  const name = loadAtEnd ? '--load-best-model-at-end' : '--early-stopping-patience';
  if (o.evalEvery === 0 && o.evalStrategy !== 'epoch')
    throw new UsageError(
      `train: ${name} needs --eval-every N (and held-out data: --eval-data or --eval-fraction): the evaluations it compares`,
    );
  let checkpointEvery = o.checkpointEvery;
  if (loadAtEnd) {
    if (o.fullFinetune)
      throw new UsageError(
        'train: --load-best-model-at-end needs LoRA: a full fine-tune writes no checkpoints to choose from',
      );
    if (checkpointEvery === 0) checkpointEvery = o.evalEvery;
    else if (o.evalEvery % checkpointEvery !== 0)
      throw new UsageError(
        `train: --load-best-model-at-end needs a checkpoint at every evaluation: --eval-every ${o.evalEvery} ` +
          `is not a multiple of --checkpoint-every ${checkpointEvery} (leave --checkpoint-every out: it follows --eval-every)`,
      );
  }
  const warnings = loadAtEnd
    ? []
    : [
        "--early-stopping-patience without --load-best-model-at-end: the adapter saved is the last step's, not the best evaluated one's",
      ];
  return {
    settings: { metric, loadAtEnd, patience, threshold: o.earlyStoppingThreshold ?? 0 },
    checkpointEvery,
    warnings,
  };
}
