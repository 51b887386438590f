// TEST HOOKS, not features; unset (always, outside tests) they do nothing.
// LORAFLEET_FAULT_CORRUPT_AT="RANK:STEP" makes the worker of that rank perturb
// one LoRA parameter right after that step's update, so end-to-end tests can
// check that the coordinator's replica-hash check catches a diverged replica.
// LORAFLEET_FAULT_STEP_DELAY_MS=N makes every step wait N ms first, so fault
// tests can kill or stop workers at chosen steps of a tiny model's run.
// LORAFLEET_FAULT_UNLABELLED_AT=STEP removes every label of that step's batches
// on every rank, so tests can check how a data error on a worker ends the run.
// LORAFLEET_FAULT_HANG_AT="RANK:STEP" blocks that rank's main thread for good
// in the first micro-batch of that step (its heartbeat thread beats on), so
// tests can check that the coordinator's --step-timeout finds a hung computation.
// LORAFLEET_FAULT_BLOCK_MS=N blocks the main thread N ms in every micro-batch
// (a stand-in for a long kernel), so tests get long micro-batches of a tiny model.
// LORAFLEET_FAULT_PAUSE="MOMENT:MS,..." makes the worker wait MS ms at each of
// the awkward moments named (eval, checkpoint, state, regroup, shared) and say so on
// stderr, so fault tests can kill or stop a process exactly then.
import { IGNORE_INDEX } from '@lorafleet/data';
import type { TokenBatch } from '@lorafleet/models';
import type { TrainingStep } from './step.js';

export const FAULT_CORRUPT_AT = 'LORAFLEET_FAULT_CORRUPT_AT';

/** Perturbs parameter 0 of `step` if the environment asks for it at this rank and step. */
export function maybeCorruptReplica(
  step: TrainingStep,
  rank: number,
  env: NodeJS.ProcessEnv = process.env,
): boolean {
  const spec = env[FAULT_CORRUPT_AT];
  if (!spec) return false;
  const match = /^(\d+):(\d+)$/.exec(spec);
  if (!match) throw new Error(`${FAULT_CORRUPT_AT}=${spec}: expected RANK:STEP`);
  if (Number(match[1]) !== rank || Number(match[2]) !== step.stepsDone) return false;
  const state = step.snapshot();
  state.values[0]! += 1e-3;
  step.restore(state);
  return true;
}

export const FAULT_STEP_DELAY_MS = 'LORAFLEET_FAULT_STEP_DELAY_MS';

/** Waits LORAFLEET_FAULT_STEP_DELAY_MS before a step (abortable), if set. */
export async function maybeDelayStep(
  signal: AbortSignal,
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  const spec = env[FAULT_STEP_DELAY_MS];
  if (!spec) return;
  const ms = Number(spec);
  if (!Number.isFinite(ms) || ms < 0)
    throw new Error(`${FAULT_STEP_DELAY_MS}=${spec}: expected milliseconds`);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export const FAULT_UNLABELLED_AT = 'LORAFLEET_FAULT_UNLABELLED_AT';

/** Masks every label of `batches` if the environment asks for it at this step (1-based). */
export function maybeUnlabel(
  batches: readonly TokenBatch[],
  step: number,
  env: NodeJS.ProcessEnv = process.env,
): void {
  const spec = env[FAULT_UNLABELLED_AT];
  if (!spec) return;
  if (!/^\d+$/.test(spec)) throw new Error(`${FAULT_UNLABELLED_AT}=${spec}: expected STEP`);
  if (Number(spec) !== step) return;
  for (const batch of batches) batch.labels.fill(IGNORE_INDEX);
}

export const FAULT_HANG_AT = 'LORAFLEET_FAULT_HANG_AT';

/** Blocks this thread forever (without spinning) if the environment asks for it at this rank and step. */
export function maybeHangCompute(
  rank: number,
  step: number,
  log: (line: string) => void,
  env: NodeJS.ProcessEnv = process.env,
): void {
  const spec = env[FAULT_HANG_AT];
  if (!spec) return;
  const match = /^(\d+):(\d+)$/.exec(spec);
  if (!match) throw new Error(`${FAULT_HANG_AT}=${spec}: expected RANK:STEP`);
  if (Number(match[1]) !== rank || Number(match[2]) !== step) return;
  log(`rank ${rank}: test hook: the computation of step ${step} hangs`);
  // Nothing ever notifies this word: like a kernel that never returns.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
}

export const FAULT_BLOCK_MS = 'LORAFLEET_FAULT_BLOCK_MS';

/** Blocks this thread (without spinning) LORAFLEET_FAULT_BLOCK_MS ms, if set. */
export function maybeBlockCompute(
  rank: number,
  step: number,
  log: (line: string) => void,
  env: NodeJS.ProcessEnv = process.env,
): void {
  const spec = env[FAULT_BLOCK_MS];
  if (!spec) return;
  const ms = Number(spec);
  if (!Number.isFinite(ms) || ms < 0)
    throw new Error(`${FAULT_BLOCK_MS}=${spec}: expected milliseconds`);
  log(`rank ${rank}: test hook: a micro-batch of step ${step} blocks for ${ms} ms`);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export const FAULT_PAUSE = 'LORAFLEET_FAULT_PAUSE';

/**
 * Where a worker can be made to wait: before it sends EvalDone, between the
 * adapter and the optimizer file of a checkpoint, before it sends its trainer
 * state to a joiner, before it sends Regrouped, between its sums of an
 * objective's global-batch statistic (KTO's KL) and their all-reduce.
 */
export type PauseMoment = 'eval' | 'checkpoint' | 'state' | 'regroup' | 'shared';
const MOMENTS: Record<PauseMoment, true> = {
  eval: true,
  checkpoint: true,
  state: true,
  regroup: true,
  shared: true,
};

/** LORAFLEET_FAULT_PAUSE's pauses by moment (ms); throws naming a bad entry. */
export function pausesOf(
  env: NodeJS.ProcessEnv = process.env,
): Partial<Record<PauseMoment, number>> {
  const spec = env[FAULT_PAUSE];
  const pauses: Partial<Record<PauseMoment, number>> = {};
  if (!spec) return pauses;
  for (const entry of spec.split(',')) {
    const match = /^(\w+):(\d+)$/.exec(entry.trim());
    if (!match || !(match[1]! in MOMENTS)) {
      throw new Error(
        `${FAULT_PAUSE}=${spec}: "${entry}" is not MOMENT:MS with MOMENT one of ${Object.keys(MOMENTS).join(', ')}`,
      );
    }
    pauses[match[1] as PauseMoment] = Number(match[2]);
  }
  return pauses;
}

/** Waits at `moment` of `step` if LORAFLEET_FAULT_PAUSE asks for it, saying so on stderr first. */
export async function maybePause(
  moment: PauseMoment,
  step: number,
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  const ms = pausesOf(env)[moment];
  if (ms === undefined) return;
  // The line fault tests wait for: the moment, the step and this process.
  console.error(`test hook: pause ${ms} ms in ${moment} at step ${step} (pid ${process.pid})`);
  await new Promise((resolve) => setTimeout(resolve, ms));
}
