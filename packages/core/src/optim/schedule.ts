// Learning-rate schedules as pure functions of the step (0-based, before the
// update): transformers' `lr_scheduler_type`s, each with its
// `lr_scheduler_kwargs` as fields, equal to transformers' own lambdas
// (apps/coordinator/test/lr-schedules.test.ts runs them side by side).

import { PLATEAU_DEFAULTS, type PlateauSettings, plateauLr } from './plateau.js';

/** transformers' SchedulerType names that a run can take. */
export type ScheduleKind =
  | 'constant'
  | 'constant_with_warmup'
  | 'linear'
  | 'cosine'
  | 'cosine_with_min_lr'
  | 'cosine_warmup_with_min_lr'
  | 'cosine_with_restarts'
  | 'polynomial'
  | 'inverse_sqrt'
  | 'warmup_stable_decay'
  | 'reduce_lr_on_plateau';

/** Every kind, in the order --help lists them. */
export const SCHEDULE_KINDS: readonly ScheduleKind[] = [
  'linear',
  'cosine',
  'constant',
  'constant_with_warmup',
  'cosine_with_min_lr',
  'cosine_warmup_with_min_lr',
  'cosine_with_restarts',
  'polynomial',
  'inverse_sqrt',
  'warmup_stable_decay',
  'reduce_lr_on_plateau',
];

/** warmup_stable_decay's warmup_type and decay_type. */
export type WsdShape = 'linear' | 'cosine' | '1-sqrt';

export interface LrSchedule {
  kind: ScheduleKind;
  /** Linear warmup from 0 (warmup_stable_decay: from minRatio, shaped by warmupType). */
  warmupSteps?: number;
  /** The run's steps: every kind but the constant ones and inverse_sqrt. */
  totalSteps?: number;
  /** Cosine waves over the decay (num_cycles; default 0.5, a half wave; cosine_with_restarts: 1). */
  numCycles?: number;
  /** The floor, a share of the LR: cosine_with_min_lr's min_lr_rate, warmup_stable_decay's min_lr_ratio. */
  minRatio?: number;
  /** cosine_warmup_with_min_lr: the warmup's first factor (warmup_lr_rate; default 1 / warmup). */
  warmupLrRate?: number;
  /** polynomial: lr_end over the LR (default 1e-7 over it), and the power (default 1). */
  lrEndRatio?: number;
  power?: number;
  /** inverse_sqrt: the time scale (default: the warmup steps, or 10000 without warmup). */
  timescale?: number;
  /** warmup_stable_decay: decay steps, stable steps (default: what warmup and decay leave) and shapes. */
  decaySteps?: number;
  stableSteps?: number;
  warmupType?: WsdShape;
  decayType?: WsdShape;
  /** reduce_lr_on_plateau: ReduceLROnPlateau's settings (plateau.ts). */
  plateau?: PlateauSettings;
}

/** The share of the decay done at `step`: 0 at the end of warmup, 1 at totalSteps. */
const progress = (s: LrSchedule, step: number) => {
  const warmup = s.warmupSteps ?? 0;
  return (step - warmup) / Math.max(1, (s.totalSteps ?? 0) - warmup);
};

/** 1 at progress 0, falling over `cycles` waves (0.5: half a wave, to 0 at progress 1). */
const wave = (p: number, cycles: number) => 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * p));

/** warmup_stable_decay's shapes, from 0 at p = 0 to 1 at p = 1 (warmup) or back (decay: 1 - it). */
const WSD_SHAPES: Record<
  WsdShape,
  { warmup: (p: number) => number; decay: (p: number, cycles: number) => number }
> = {
  linear: { warmup: (p) => p, decay: (p) => 1 - p },
  cosine: { warmup: (p) => 0.5 * (1 - Math.cos(Math.PI * p)), decay: wave },
  '1-sqrt': { warmup: (p) => 1 - Math.sqrt(1 - p), decay: (p) => 1 - Math.sqrt(p) },
};

function warmupStableDecay(s: LrSchedule, step: number): number {
  const [warmup, floor, cycles] = [s.warmupSteps ?? 0, s.minRatio ?? 0, s.numCycles ?? 0.5];
  const decay = s.decaySteps ?? 0;
  const stable = s.stableSteps ?? (s.totalSteps ?? 0) - warmup - decay;
  const floored = (f: number) => Math.max(0, f * (1 - floor) + floor);
  if (step < warmup)
    return floored(WSD_SHAPES[s.warmupType ?? 'linear'].warmup(step / Math.max(1, warmup)));
  if (step < warmup + stable) return 1;
  if (step < warmup + stable + decay) {
    const p = (step - warmup - stable) / Math.max(1, decay);
    return floored(WSD_SHAPES[s.decayType ?? 'cosine'].decay(p, cycles));
  }
  return floor;
}

/**
 * cosine_warmup_with_min_lr (transformers' get_cosine_with_min_lr_schedule_with_warmup_lr_rate):
 * its warmup ends at 1 on the last warmup step (from warmup_lr_rate, or counting steps from 1),
 * and its decay counts the first step after warmup as done.
 */
function cosineWarmupWithMinLr(s: LrSchedule, step: number): number {
  const [warmup, floor, rate] = [s.warmupSteps ?? 0, s.minRatio ?? 0, s.warmupLrRate];
  if (step < warmup) {
    if (rate === undefined) return (step + 1) / Math.max(1, warmup);
    return rate + ((1 - rate) * step) / Math.max(1, warmup - 1);
  }
  const p = (step - warmup + 1) / Math.max(1, (s.totalSteps ?? 0) - warmup);
  return Math.max(0, wave(p, s.numCycles ?? 0.5) * (1 - floor) + floor);
}

/** Each kind's multiplier after the linear warmup (warmup_stable_decay, cosine_warmup_with_min_lr: throughout). */
const AFTER_WARMUP: Record<ScheduleKind, (s: LrSchedule, step: number) => number> = {
  constant: () => 1,
  constant_with_warmup: () => 1,
  linear: (s, step) => Math.max(0, 1 - progress(s, step)),
  cosine: (s, step) => {
    const floor = s.minRatio ?? 0;
    return Math.max(0, wave(progress(s, step), s.numCycles ?? 0.5) * (1 - floor) + floor);
  },
  cosine_with_min_lr: (s, step) => AFTER_WARMUP.cosine(s, step),
  cosine_warmup_with_min_lr: cosineWarmupWithMinLr,
  cosine_with_restarts: (s, step) => {
    const p = progress(s, step);
    if (p >= 1) return 0;
    return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * (((s.numCycles ?? 1) * p) % 1))));
  },
  polynomial: (s, step) => {
    const end = s.lrEndRatio ?? 0;
    if (step > (s.totalSteps ?? 0)) return end;
    return (1 - end) * (1 - progress(s, step)) ** (s.power ?? 1) + end;
  },
  inverse_sqrt: (s, step) => {
    const warmup = s.warmupSteps ?? 0;
    const timescale = s.timescale ?? (warmup || 10_000);
    return 1 / Math.sqrt((step + timescale - warmup) / timescale);
  },
  warmup_stable_decay: warmupStableDecay,
  // Constant between evaluations; the reductions are plateau.ts's, counted by the coordinator.
  reduce_lr_on_plateau: () => 1,
};

/** Kinds whose own shape covers the warmup (warmup_stable_decay, ...) or that ignore it (transformers' plateau). */
const NO_LINEAR_WARMUP: ReadonlySet<ScheduleKind> = new Set([
  'warmup_stable_decay',
  'cosine_warmup_with_min_lr',
  'reduce_lr_on_plateau',
]);

/** The multiplier of the base LR at `step`, as transformers' scheduler lambdas. */
export function lrFactor(schedule: LrSchedule, step: number): number {
  const warmup = schedule.warmupSteps ?? 0;
  if (!NO_LINEAR_WARMUP.has(schedule.kind) && step < warmup) return step / Math.max(1, warmup);
  return AFTER_WARMUP[schedule.kind](schedule, step);
}

/**
 * The LR of `step` from the base `lr`: lr * lrFactor, or for
 * reduce_lr_on_plateau the LR after the evaluations' `reductions`.
 */
export function scheduledLr(
  lr: number,
  schedule: LrSchedule,
  step: number,
  reductions = 0,
): number {
  if (schedule.kind === 'reduce_lr_on_plateau')
    return plateauLr(schedule.plateau ?? PLATEAU_DEFAULTS, lr, reductions);
  return lr * lrFactor(schedule, step);
}

/** Kinds that decay over the run's steps, so need totalSteps. */
export const NEEDS_TOTAL: ReadonlySet<ScheduleKind> = new Set([
  'linear',
  'cosine',
  'cosine_with_min_lr',
  'cosine_warmup_with_min_lr',
  'cosine_with_restarts',
  'polynomial',
  'warmup_stable_decay',
]);

export function validateSchedule(schedule: LrSchedule): void {
  const { kind, warmupSteps = 0, totalSteps } = schedule;
  const bad = (what: string): never => {
    throw new Error(`the ${kind} schedule: ${what}`);
  };
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0)
    bad(`warmup steps must be a non-negative integer, got ${warmupSteps}`);
  if (NEEDS_TOTAL.has(kind) && !(Number.isInteger(totalSteps) && totalSteps! > 0))
    bad(`it needs total steps > 0, got ${totalSteps}`);
  const { minRatio = 0, numCycles = 1, lrEndRatio = 0, power = 1, timescale = 1 } = schedule;
  if (!(minRatio >= 0 && minRatio <= 1)) bad(`the floor must be in [0, 1], got ${minRatio}`);
  if (!(numCycles > 0)) bad(`num_cycles must be > 0, got ${numCycles}`);
  if (!(lrEndRatio >= 0 && lrEndRatio < 1))
    bad(`lr_end must be below the LR, got ${lrEndRatio} of it`);
  if (!(power > 0) || !(timescale > 0)) bad(`power and timescale must be > 0`);
  const { warmupLrRate = 0 } = schedule;
  if (!(warmupLrRate >= 0 && warmupLrRate <= 1))
    bad(`warmup_lr_rate must be in [0, 1], got ${warmupLrRate}`);
  if (kind === 'reduce_lr_on_plateau') validatePlateau(schedule.plateau ?? PLATEAU_DEFAULTS, bad);
  if (kind === 'warmup_stable_decay') {
    const { decaySteps, stableSteps } = schedule;
    if (!(Number.isInteger(decaySteps) && decaySteps! >= 0))
      bad(`num_decay_steps must be a non-negative integer, got ${decaySteps}`);
    const stable = stableSteps ?? totalSteps! - warmupSteps - decaySteps!;
    if (!(Number.isInteger(stable) && stable >= 0))
      bad(`warmup (${warmupSteps}) and decay (${decaySteps}) steps leave ${stable} stable steps`);
  }
}

/** ReduceLROnPlateau's own checks (factor < 1), and what keeps the LR finite. */
function validatePlateau(p: PlateauSettings, bad: (what: string) => never): void {
  if (!(p.factor >= 0 && p.factor < 1)) bad(`factor must be in [0, 1), got ${p.factor}`);
  if (!(Number.isInteger(p.patience) && p.patience >= 0))
    bad(`patience must be a non-negative integer, got ${p.patience}`);
  if (!(Number.isInteger(p.cooldown) && p.cooldown >= 0))
    bad(`cooldown must be a non-negative integer, got ${p.cooldown}`);
  for (const [name, x] of [
    ['threshold', p.threshold],
    ['min_lr', p.minLr],
    ['eps', p.eps],
  ] as const)
    if (!(x >= 0 && Number.isFinite(x))) bad(`${name} must be >= 0, got ${x}`);
}
