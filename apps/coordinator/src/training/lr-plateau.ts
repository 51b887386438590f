// --schedule reduce_lr_on_plateau on the coordinator: transformers' Trainer
// steps torch's ReduceLROnPlateau with the held-out metric
// (--metric-for-best-model, default loss) after each evaluation at an
// --eval-every step; this does the same with core's plateauStep and sends
// the count of reductions in every StepPlan, from which each worker computes
// the LR. The state rides in every checkpoint's trainer_state.json, so a
// resumed run lowers its LR where the uninterrupted one did. plateauSettings
// checks the options once, as transformers' TrainingArguments does.
import {
  type LrSchedule,
  PLATEAU_DEFAULTS,
  type PlateauSettings,
  type PlateauState,
  initialPlateau,
  plateauLr,
  plateauStep,
} from '@lorafleet/core';
import type { StoredPlateau } from '@lorafleet/worker';
import { UsageError } from '../args.js';
import { bestMetric } from './best-model-options.js';
import { type BestMetric, type HeldOutMetrics, METRICS } from './best-model.js';
import type { TrainOptions } from './train-spec.js';

export class LrPlateau {
  private current: PlateauState;

  constructor(
    private readonly settings: PlateauSettings,
    private readonly metric: BestMetric,
    /** --lr, where the reductions start. */
    private readonly lr: number,
    from?: StoredPlateau,
  ) {
    const initial = initialPlateau(settings);
    this.current = from ? { ...from, best: from.best ?? initial.best } : initial;
  }

  /** An evaluation at an --eval-every step: ReduceLROnPlateau.step(metric). */
  evaluated(step: number, e: HeldOutMetrics): void {
    const value = METRICS[this.metric].of(e);
    if (value === undefined)
      throw new Error(
        `--schedule reduce_lr_on_plateau: the evaluation at step ${step} has no ${this.metric}`,
      );
    this.current = plateauStep(this.settings, this.current, value, this.lr);
  }

  /** The reductions so far (StepPlan.lr_reductions). */
  get reductions(): number {
    return this.current.reductions;
  }

  /** The LR the next step takes. */
  get lrNow(): number {
    return plateauLr(this.settings, this.lr, this.current.reductions);
  }

  /** For trainer_state.json (JSON has no infinity: no best yet is null). */
  get state(): StoredPlateau {
    const { best } = this.current;
    return { ...this.current, best: Number.isFinite(best) ? best : null };
  }
}

/**
 * --schedule reduce_lr_on_plateau's metric and checks, as transformers'
 * TrainingArguments: it needs evaluations (an eval strategy), reads
 * --metric-for-best-model (default loss), and ignores warmup; a mode that
 * looks for the metric's wrong direction is warned of. null with other schedules.
 */
export function plateauSettings(
  o: TrainOptions,
  schedule: LrSchedule,
): { settings: PlateauSettings; metric: BestMetric; warnings: string[] } | null {
  if (schedule.kind !== 'reduce_lr_on_plateau') return null;
  if (o.evalEvery === 0 && o.evalStrategy !== 'epoch')
    throw new UsageError(
      'train: --schedule reduce_lr_on_plateau needs --eval-every N or --eval-strategy epoch (and held-out data: --eval-data or --eval-fraction): it lowers the LR when evaluations stop improving',
    );
  const settings = schedule.plateau ?? PLATEAU_DEFAULTS;
  if (o.loraplusLrRatio !== undefined && settings.minLr > 0)
    throw new UsageError(
      'train: --schedule reduce_lr_on_plateau with min_lr and --loraplus-lr-ratio: the floor applies per parameter group in torch, which is not done here; leave min_lr out',
    );
  const metric = bestMetric(o);
  const warnings: string[] = [];
  if (o.warmupSteps > 0)
    warnings.push(
      "--schedule reduce_lr_on_plateau starts at --lr and ignores --warmup-steps, as transformers' does",
    );
  const higher = METRICS[metric].greaterIsBetter;
  if (higher !== (settings.mode === 'max'))
    warnings.push(
      `--schedule reduce_lr_on_plateau watches ${metric}, where ${higher ? 'higher' : 'lower'} is better, in mode "${settings.mode}": give {"mode": "${higher ? 'max' : 'min'}"} in --lr-scheduler-kwargs (transformers passes the mode through as given, "min" by default)`,
    );
  return { settings, metric, warnings };
}
