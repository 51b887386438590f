// transformers' reduce_lr_on_plateau: torch.optim.lr_scheduler.ReduceLROnPlateau
// stepped with the held-out metric after each evaluation (Trainer steps it
// there, never per step). The LR starts at --lr, ignores warmup, and after
// more than `patience` evaluations without improvement (outside a cooldown)
// becomes max(lr * factor, min_lr), where that lowers it by more than eps.
// The state is a few numbers the coordinator keeps (and checkpoints); a step
// carries only how many reductions took effect, and plateauLr turns that
// count into the LR with torch's own float64 operations.

export interface PlateauSettings {
  /** 'min': lower is better (a loss), 'max': higher (an accuracy). */
  mode: 'min' | 'max';
  factor: number;
  patience: number;
  threshold: number;
  thresholdMode: 'rel' | 'abs';
  cooldown: number;
  minLr: number;
  eps: number;
}

/** torch's defaults (transformers passes lr_scheduler_kwargs over them). */
export const PLATEAU_DEFAULTS: PlateauSettings = {
  mode: 'min',
  factor: 0.1,
  patience: 10,
  threshold: 1e-4,
  thresholdMode: 'rel',
  cooldown: 0,
  minLr: 0,
  eps: 1e-8,
};

/** What ReduceLROnPlateau remembers between evaluations; `reductions`: those that changed the LR. */
export interface PlateauState {
  best: number;
  badEpochs: number;
  cooldownCounter: number;
  reductions: number;
}

export function initialPlateau(s: PlateauSettings): PlateauState {
  return {
    best: s.mode === 'min' ? Infinity : -Infinity,
    badEpochs: 0,
    cooldownCounter: 0,
    reductions: 0,
  };
}

/** torch's is_better. */
function better(s: PlateauSettings, a: number, best: number): boolean {
  if (s.mode === 'min')
    return s.thresholdMode === 'rel' ? a < best * (1 - s.threshold) : a < best - s.threshold;
  return s.thresholdMode === 'rel' ? a > best * (s.threshold + 1) : a > best + s.threshold;
}

/** The LR after `reductions` effective reductions from `lr`: max(lr * factor, min_lr), repeated. */
export function plateauLr(s: PlateauSettings, lr: number, reductions: number): number {
  let current = lr;
  for (let k = 0; k < reductions; k++) current = Math.max(current * s.factor, s.minLr);
  return current;
}

/** ReduceLROnPlateau.step(metric): the state after one evaluation, given the base `lr`. */
export function plateauStep(
  s: PlateauSettings,
  state: PlateauState,
  metric: number,
  lr: number,
): PlateauState {
  const next = { ...state };
  if (better(s, metric, next.best)) {
    next.best = metric;
    next.badEpochs = 0;
  } else next.badEpochs++;
  if (next.cooldownCounter > 0) {
    next.cooldownCounter--;
    next.badEpochs = 0;
  }
  if (next.badEpochs > s.patience) {
    const old = plateauLr(s, lr, next.reductions);
    if (old - Math.max(old * s.factor, s.minLr) > s.eps) next.reductions++;
    next.cooldownCounter = s.cooldown;
    next.badEpochs = 0;
  }
  return next;
}
