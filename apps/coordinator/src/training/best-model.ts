// --load-best-model-at-end and --early-stopping-patience, as transformers'
// Trainer does them: each evaluation at an --eval-every step compares its
// held-out metric (--metric-for-best-model: the loss, lower is better, or a
// preference objective's reward accuracy or margin, higher is better) with
// the best so far. A better one (strictly) becomes the best
// (_determine_best_metric); one that does not improve on the best by more
// than the threshold is a miss, and `patience` misses in a row stop the run
// (EarlyStoppingCallback, which compares with the best before this
// evaluation). The final evaluation is a candidate too, never a miss. The
// state rides in every checkpoint's trainer_state.json, so a resumed run
// chooses and stops as the uninterrupted one.
// The options and the settings made of them: best-model-options.ts.
import type { BestModelState } from '@lorafleet/worker';
import type { BestModelSettings } from './best-model-options.js';
import type { TrainOptions } from './train-spec.js';

/** What an evaluation reports, as far as the metrics below read it. */
export interface HeldOutMetrics {
  loss: number;
  /** meanTokenAccuracy: DPO's, over the chosen responses. */
  pairs?: { rewardAccuracy: number; rewardMargin: number; meanTokenAccuracy?: number };
  kto?: { rewardMargin?: number };
  sft?: { meanTokenAccuracy: number };
}

/** The metrics that can choose the best model, by TRL's log names (transformers prefixes "eval_"). */
export type BestMetric = 'loss' | 'rewards/accuracies' | 'rewards/margins' | 'mean_token_accuracy';

export const METRICS: {
  readonly [M in BestMetric]: {
    greaterIsBetter: boolean;
    /** The objectives whose evaluations report it. */
    objectives: readonly TrainOptions['objective'][];
    of: (e: HeldOutMetrics) => number | undefined;
  };
} = {
  loss: {
    greaterIsBetter: false,
    objectives: ['sft', 'dpo', 'orpo', 'simpo', 'cpo', 'kto'],
    of: (e) => e.loss,
  },
  'rewards/accuracies': {
    greaterIsBetter: true,
    objectives: ['dpo', 'orpo', 'simpo', 'cpo'],
    of: (e) => e.pairs?.rewardAccuracy,
  },
  'rewards/margins': {
    greaterIsBetter: true,
    objectives: ['dpo', 'orpo', 'simpo', 'cpo', 'kto'],
    of: (e) => e.pairs?.rewardMargin ?? e.kto?.rewardMargin,
  },
  mean_token_accuracy: {
    greaterIsBetter: true,
    objectives: ['sft', 'dpo'],
    of: (e) => e.sft?.meanTokenAccuracy ?? e.pairs?.meanTokenAccuracy,
  },
};

/** The best evaluation so far and the misses since; what a checkpoint stores of it. */
export class BestModel {
  private best: { step: number; value: number } | null = null;
  private misses = 0;

  /** `from`: a checkpoint's state; one for another metric is set aside (`warn`). */
  constructor(
    readonly settings: BestModelSettings,
    from?: BestModelState,
    warn: (line: string) => void = () => undefined,
  ) {
    if (from && from.metric !== settings.metric) {
      warn(
        `the checkpoint chose by ${from.metric}, this run by ${settings.metric}: ` +
          'the best model and early stopping start over from here',
      );
    } else if (from) {
      this.best = { step: from.step, value: from.value };
      this.misses = from.misses;
    }
  }

  /** An evaluation at an --eval-every step; returns whether the run should stop now. */
  evaluated(step: number, e: HeldOutMetrics): boolean {
    const value = this.valueOf(step, e);
    const best = this.best;
    const improved =
      best === null ||
      (this.better(value, best.value) && Math.abs(value - best.value) > this.settings.threshold);
    this.misses = improved ? 0 : this.misses + 1;
    this.consider(step, value);
    return this.settings.patience !== null && this.misses >= this.settings.patience;
  }

  /** The evaluation after the last step: a candidate, not a miss. */
  candidate(step: number, e: HeldOutMetrics): void {
    this.consider(step, this.valueOf(step, e));
  }

  /** For trainer_state.json; undefined before the first evaluation. */
  get state(): BestModelState | undefined {
    return this.best
      ? { metric: this.settings.metric, ...this.best, misses: this.misses }
      : undefined;
  }

  /** The best evaluated step and its metric's value; null before the first evaluation. */
  get bestStep(): { step: number; value: number } | null {
    return this.best;
  }

  get missesInARow(): number {
    return this.misses;
  }

  private consider(step: number, value: number): void {
    if (this.best === null || this.better(value, this.best.value)) this.best = { step, value };
  }

  private better(a: number, b: number): boolean {
    return METRICS[this.settings.metric].greaterIsBetter ? a > b : a < b;
  }

  private valueOf(step: number, e: HeldOutMetrics): number {
    const value = METRICS[this.settings.metric].of(e);
    if (value === undefined)
      throw new Error(
        `--metric-for-best-model ${this.settings.metric}: the evaluation at step ${step} has none ` +
          '(KTO measures a margin only where the held-out data has desirable and undesirable examples)',
      );
    return value;
  }
}
