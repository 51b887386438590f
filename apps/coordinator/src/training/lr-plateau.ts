// --schedule reduce_lr_on_plateau on the coordinator: transformers' Trainer
// steps torch's ReduceLROnPlateau with the held-out metric
// (--metric-for-best-model, default loss) after each evaluation at an
// --eval-every step; this does the same with core's plateauStep and sends
// the count of reductions in every StepPlan, from which each worker computes
// the LR. The state rides in every checkpoint's trainer_state.json, so a
// resumed run lowers its LR where the uninterrupted one did.
import {
  type PlateauSettings,
  type PlateauState,
  initialPlateau,
  plateauLr,
  plateauStep,
} from '@lorafleet/core';
import type { StoredPlateau } from '@lorafleet/worker';
import { type BestMetric, type HeldOutMetrics, METRICS } from './best-model.js';

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
