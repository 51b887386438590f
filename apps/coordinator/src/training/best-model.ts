// --load-best-model-at-end and --early-stopping-patience, as transformers'
// Trainer does them with metric_for_best_model="loss": each evaluation at an
// --eval-every step compares its held-out loss with the best so far. A lower
// one (strictly) becomes the best (_determine_best_metric); one that does not
// lower the best by more than the threshold is a miss, and `patience` misses
// in a row stop the run (EarlyStoppingCallback, which compares with the best
// before this evaluation). The final evaluation is a candidate too, never a
// miss. The state rides in every checkpoint's trainer_state.json, so a
// resumed run chooses and stops as the uninterrupted one.
import type { BestModelState } from '@lorafleet/worker';
import { UsageError } from '../args.js';
import type { TrainOptions } from './train-spec.js';

export interface BestModelSettings {
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
  if (!loadAtEnd && patience === null)
    return { settings: null, checkpointEvery: o.checkpointEvery, warnings: [] };
  const name = loadAtEnd ? '--load-best-model-at-end' : '--early-stopping-patience';
  if (o.evalEvery === 0)
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
    settings: { loadAtEnd, patience, threshold: o.earlyStoppingThreshold ?? 0 },
    checkpointEvery,
    warnings,
  };
}

/** The best evaluation so far and the misses since; what a checkpoint stores of it. */
export class BestModel {
  private best: { step: number; evalLoss: number } | null;
  private misses: number;

  constructor(
    readonly settings: BestModelSettings,
    from?: BestModelState,
  ) {
    this.best = from ? { step: from.step, evalLoss: from.evalLoss } : null;
    this.misses = from?.misses ?? 0;
  }

  /** An evaluation at an --eval-every step; returns whether the run should stop now. */
  evaluated(step: number, evalLoss: number): boolean {
    const best = this.best;
    const improved =
      best === null ||
      (evalLoss < best.evalLoss && best.evalLoss - evalLoss > this.settings.threshold);
    this.misses = improved ? 0 : this.misses + 1;
    this.candidate(step, evalLoss);
    return this.settings.patience !== null && this.misses >= this.settings.patience;
  }

  /** The evaluation after the last step: a candidate, not a miss. */
  candidate(step: number, evalLoss: number): void {
    if (this.best === null || evalLoss < this.best.evalLoss) this.best = { step, evalLoss };
  }

  /** For trainer_state.json; undefined before the first evaluation. */
  get state(): BestModelState | undefined {
    return this.best ? { ...this.best, misses: this.misses } : undefined;
  }

  /** The best evaluated step and its loss; null before the first evaluation. */
  get bestStep(): { step: number; evalLoss: number } | null {
    return this.best;
  }

  get missesInARow(): number {
    return this.misses;
  }
}
