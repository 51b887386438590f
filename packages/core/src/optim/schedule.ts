/** Learning-rate schedules as pure functions of the step (0-based, before the update). */
export type LrSchedule =
  | { kind: 'constant'; warmupSteps?: number }
  | { kind: 'linear'; warmupSteps?: number; totalSteps: number }
  | { kind: 'cosine'; warmupSteps?: number; totalSteps: number; minRatio?: number };

/**
 * The multiplier of the base LR at `step`, as transformers' get_*_schedule_with_warmup:
 * linear warmup from 0 over warmupSteps, then constant, linear decay to 0, or
 * half-cosine decay to minRatio at totalSteps.
 */
export function lrFactor(schedule: LrSchedule, step: number): number {
  const warmup = schedule.warmupSteps ?? 0;
  if (step < warmup) return step / Math.max(1, warmup);
  if (schedule.kind === 'constant') return 1;
  const span = Math.max(1, schedule.totalSteps - warmup);
  const progress = Math.min(1, (step - warmup) / span);
  if (schedule.kind === 'linear') return Math.max(0, 1 - progress);
  const min = schedule.minRatio ?? 0;
  return min + (1 - min) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

export function validateSchedule(schedule: LrSchedule): void {
  const warmup = schedule.warmupSteps ?? 0;
  if (!Number.isInteger(warmup) || warmup < 0) {
    throw new Error(`warmup steps must be a non-negative integer, got ${warmup}`);
  }
  if (
    schedule.kind !== 'constant' &&
    !(Number.isInteger(schedule.totalSteps) && schedule.totalSteps > 0)
  ) {
    throw new Error(
      `the ${schedule.kind} schedule needs total steps > 0, got ${schedule.totalSteps}`,
    );
  }
}
