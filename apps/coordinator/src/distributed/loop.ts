// The training loop, one for every fleet (one worker in this process, N
// spawned, N external). A step, in DESIGN.md's order: plan the global batch,
// send each ring member its shard, collect StepDone, check that the replicas
// stayed bitwise identical and finite, commit, record the samples in the
// ledger; then metrics, evaluation and checkpoints. A lost worker aborts the
// step: the ring re-forms and the same step is replayed (recovery.ts).
import { appendFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  LEDGER_FILE,
  SAMPLER_START,
  SampleLedger,
  type SamplerState,
  shard,
} from '@lorafleet/data';
import type { StepDone } from '@lorafleet/protocol';
import type { RunObserver } from '../observe/observer.js';
import { Progress } from '../progress.js';
import type { BestModel } from '../training/best-model.js';
import type { Interrupt } from '../training/interrupt.js';
import type { LrPlateau } from '../training/lr-plateau.js';
import { type TrainSeries, trimMetrics } from '../training/resume.js';
import type { TrainOptions } from '../training/train-spec.js';
import type { FleetCheckpointer, StartPoint } from './checkpoints.js';
import { diverged, divergence, likelyCause } from './divergence.js';
import { type EvalResult, lossUnit } from './evaluation.js';
import { type Member, MembersLost, type WorkerFleet } from './fleet.js';
import { type ElasticRing, withRecovery } from './recovery.js';
import { type LoopResult, type StepTimings, stepMetrics, workerTable } from './report.js';
import { checkReplicas } from './replicas.js';
import type { RunPlan } from './run-plan.js';

/** Bounds on each wait; a worker that exits or reports an error fails the run at once. */
export const TIMEOUTS = {
  helloMs: 60_000, // process start + imports
  readyMs: 600_000, // loading the model and data, PiSSA's SVD
  stepMs: 1_800_000, // one step of a large model on a slow backend
  saveMs: 300_000,
  exitMs: 30_000,
};

/** Everything a run's loop works with, set up once by train.ts. */
export interface RunContext {
  o: TrainOptions;
  fleet: WorkerFleet;
  ring: ElasticRing;
  plan: RunPlan;
  out: string;
  start: StartPoint;
  observer: RunObserver;
  interrupt: Interrupt;
  /** LoRA runs; null for full fine-tuning (its result is the only thing saved). */
  checkpoints: FleetCheckpointer | null;
  /** The held-out loss at a step boundary; null without held-out data. */
  evaluate: (done: number) => Promise<EvalResult | null>;
  /** --load-best-model-at-end, --early-stopping-patience; null without them. */
  best: BestModel | null;
  /** --schedule reduce_lr_on_plateau; null with the other schedules. */
  plateau: LrPlateau | null;
}

/** What the loop carries from step to step. */
interface LoopState {
  sampler: SamplerState;
  done: number;
  /** The step of the newest checkpoint (its folder: run.ring.lastCheckpoint). */
  lastCheckpoint: number;
  tokens: number;
  /** The summary's series: losses, and a preference run's reward accuracies. */
  series: TrainSeries;
  skipped: number;
  /** Time spent evaluating, left out of tokens/s. */
  evalSeconds: number;
  started: number;
  timings: Map<Member, StepTimings>;
  /** --early-stopping-patience ran out. */
  stoppedEarly: boolean;
  /** The newest evaluation at an --eval-every step. */
  lastEval: { step: number; result: EvalResult } | null;
  /** TRL's num_tokens: the tokens under the attention mask trained on so far; null where a resumed run's lines lack it. */
  numTokens: number | null;
}

export async function trainLoop(run: RunContext): Promise<LoopResult> {
  const { plan, out, start, interrupt, ring } = run;
  const metricsPath = join(out, 'metrics.jsonl');
  // A resumed run's losses so far (its summary covers the whole run, not this process's part).
  const { numTokens, ...earlier } = start.resumed
    ? await trimMetrics(metricsPath, start.step)
    : { losses: [], rewardAccuracies: [], numTokens: 0 };
  if (!start.resumed) await writeFile(metricsPath, '');
  const ledger = new SampleLedger(join(out, LEDGER_FILE), start.resumed ? start.step : 0);
  const progress = new Progress({ label: 'train', total: plan.steps });
  const loop: LoopState = {
    sampler: start.sampler ?? SAMPLER_START,
    done: start.step,
    lastCheckpoint: start.step,
    tokens: 0,
    series: earlier,
    skipped: 0,
    evalSeconds: 0,
    started: performance.now(),
    timings: new Map(),
    stoppedEarly: false,
    lastEval: null,
    numTokens,
  };
  const save = () => saveCheckpoint(run, loop, ledger);
  try {
    while (loop.done < plan.steps && !interrupt.requested && !loop.stoppedEarly) {
      try {
        const { reports, epoch, ids } = await stepOnce(run, loop, ledger);
        countInputTokens(run.plan, loop, ids);
        await afterStep(run, loop, reports, epoch, metricsPath, progress);
        // Every K steps, and at the end (interrupted, stopped early or not).
        const every = plan.checkpointEvery;
        if (
          (every > 0 && loop.done % every === 0) ||
          loop.done === plan.steps ||
          interrupt.requested ||
          loop.stoppedEarly
        )
          await save();
      } catch (error) {
        if (!(error instanceof MembersLost)) throw error;
        emitWorkers(run, loop);
        await ring.recover(error, loop.done + 1, loop.done);
        emitWorkers(run, loop);
        // A loss while a due checkpoint was written: write it now.
        const every = plan.checkpointEvery;
        if (loop.lastCheckpoint < loop.done && every > 0 && loop.done % every === 0)
          await withRecovery(ring, loop.done, save);
      }
    }
    if (loop.done > loop.lastCheckpoint) await withRecovery(ring, loop.done, save);
  } finally {
    ledger.close();
    progress.finish();
  }
  return {
    done: loop.done,
    interrupted: interrupt.requested,
    stoppedEarly: loop.stoppedEarly,
    lastEval: loop.lastEval,
    ...loop.series,
    tokens: loop.tokens,
    tokensSeen: start.tokensSeen + loop.tokens,
    sampler: loop.sampler,
    seconds: (performance.now() - loop.started) / 1000 - loop.evalSeconds,
  };
}

/** One step on the ring: plan, shards, StepDone, checks, commit; returns the reports by rank. */
async function stepOnce(
  run: RunContext,
  loop: LoopState,
  ledger: SampleLedger,
): Promise<{ reports: StepDone[]; epoch: number; ids: readonly number[] }> {
  const { fleet, ring, plan } = run;
  const step = loop.done + 1;
  await ring.boundary(loop.done);
  const members = fleet.active();
  const planned = plan.sampler.plan(loop.sampler);
  const t0 = performance.now();
  for (const [rank, m] of members.entries()) {
    const sampleIds = shard(planned.ids, rank, members.length);
    await fleet.send(m, {
      case: 'stepPlan',
      value: {
        ...{ step, sampleIds, microBatchSize: plan.microBatchSize },
        lrReductions: run.plateau?.reductions ?? 0,
      },
    });
  }
  const reports = await fleet.collect('stepDone', TIMEOUTS.stepMs, members);
  const wallMs = performance.now() - t0;
  checkReplicas(step, reports);
  await checkFinite(run, loop, step, reports, members);
  await fleet.broadcast({ case: 'commit', value: { step } }, members);
  ledger.append(step, planned.epoch, planned.ids);
  loop.sampler = planned.next;
  loop.done = step;
  reports.forEach((r, rank) => {
    const t = r.timings;
    loop.timings.set(members[rank]!, {
      computeMs: t.computeMs,
      allReduceMs: t.allreduceMs,
      waitMs: Math.max(0, wallMs - t.computeMs - t.allreduceMs - t.updateMs),
    });
  });
  return { reports, epoch: planned.epoch, ids: planned.ids };
}

/** Adds the step's rows' tokens to TRL's num_tokens, where the run keeps it. */
function countInputTokens(plan: RunPlan, loop: LoopState, ids: readonly number[]): void {
  if (loop.numTokens === null) return;
  for (const id of ids) loop.numTokens += plan.inputTokens[id]!;
}

/**
 * Stops a diverged run (the step aborted: replicas keep their finite state),
 * and counts skipped updates against --max-skipped-steps.
 */
async function checkFinite(
  run: RunContext,
  loop: LoopState,
  step: number,
  reports: StepDone[],
  members: Member[],
) {
  const { config } = run.plan;
  let what = divergence(reports);
  if (!what && !Number.isFinite(reports[0]!.gradNorm)) {
    loop.skipped++;
    if (loop.skipped > run.o.maxSkippedSteps) {
      what = `${loop.skipped} updates skipped for a non-finite gradient (--max-skipped-steps ${run.o.maxSkippedSteps})`;
    } else {
      console.error(
        `warning: step ${step}: non-finite gradient, update skipped (${loop.skipped} so far)`,
      );
    }
  }
  if (!what) return;
  await run.fleet.broadcast(
    { case: 'abort', value: { step, reason: 'the run diverged' } },
    members,
  );
  throw diverged(step, what, likelyCause(config), run.ring.lastCheckpoint);
}

/** The step's metrics line, events, evaluation and progress. */
async function afterStep(
  run: RunContext,
  loop: LoopState,
  reports: StepDone[],
  epoch: number,
  metricsPath: string,
  progress: Progress,
): Promise<void> {
  const { plan, observer } = run;
  const step = loop.done;
  const metrics = stepMetrics(plan, step, reports, run.plateau?.reductions ?? 0);
  loop.tokens += metrics.tokens;
  loop.series.losses.push(metrics.loss);
  if (metrics.rewardAccuracy !== undefined)
    loop.series.rewardAccuracies.push(metrics.rewardAccuracy);
  const seconds = (performance.now() - loop.started) / 1000;
  const tokensPerSecond = loop.tokens / (seconds - loop.evalSeconds);
  const line: Record<string, unknown> = { ...metrics, epoch, seconds };
  if (loop.numTokens !== null) line.numTokens = loop.numTokens;
  // The last step's too: the evaluation after training reuses it, and a checkpoint records it.
  if (plan.evalEvery > 0 && step % plan.evalEvery === 0) {
    const t0 = performance.now();
    const e = await run.evaluate(step);
    loop.evalSeconds += (performance.now() - t0) / 1000;
    if (e) {
      line.evalLoss = e.loss;
      loop.lastEval = { step, result: e };
      const stop = run.best?.evaluated(step, e) ?? false;
      if (run.plateau) notePlateau(run, step, e);
      loop.stoppedEarly = stop && step < plan.steps;
    }
    // The objective's held-out metrics as TRL's eval_ logs: evalRewardAccuracy, evalKl, evalMeanTokenAccuracy...
    for (const [name, value] of Object.entries(e?.pairs ?? e?.kto ?? e?.sft ?? {}))
      line[`eval${name[0]!.toUpperCase()}${name.slice(1)}`] = value;
  }
  await appendFile(metricsPath, JSON.stringify(line) + '\n');
  observer.metrics(line);
  const { loss, lr, tokens, gradNorm, rewardAccuracy, rewardMargin, kl } = metrics;
  const { meanTokenAccuracy, entropy } = metrics;
  const rewards = Object.fromEntries(
    Object.entries({ rewardAccuracy, rewardMargin, kl, meanTokenAccuracy, entropy }).filter(
      ([, v]) => v !== undefined,
    ),
  );
  observer.emit({
    type: 'step',
    ...{ step, epoch, loss, lr, tokens, tokensPerSecond, gradNorm, seconds, ...rewards },
  });
  emitWorkers(run, loop);
  progress.update(step, {
    loss: loss.toFixed(4),
    ...(rewardAccuracy === undefined ? {} : { 'reward acc': rewardAccuracy.toFixed(2) }),
    ...(metrics.kl === undefined ? {} : { kl: metrics.kl.toFixed(3) }),
    ...(meanTokenAccuracy === undefined ? {} : { 'tok acc': meanTokenAccuracy.toFixed(2) }),
    lr: lr.toExponential(2),
    [lossUnit(plan.config) === 'tokens' ? 'tok/s' : `${lossUnit(plan.config)}/s`]:
      tokensPerSecond.toFixed(0),
    workers: String(metrics.workers),
    allreduce: `${(100 * metrics.allReduceShare).toFixed(0)}%`,
    ...(typeof line.evalLoss === 'number' ? { eval: line.evalLoss.toFixed(4) } : {}),
  });
}

function emitWorkers(run: RunContext, loop: LoopState): void {
  run.observer.emit({
    type: 'workers',
    generation: run.ring.generation,
    workers: workerTable(run.fleet, loop.timings),
  });
}

async function saveCheckpoint(
  run: RunContext,
  loop: LoopState,
  ledger: SampleLedger,
): Promise<void> {
  if (!run.checkpoints || loop.lastCheckpoint === loop.done) return;
  // The ledger reaches the disk before the checkpoint that covers it.
  ledger.sync();
  const best = run.best && {
    state: run.best.state,
    keepStep: run.best.settings.loadAtEnd ? run.best.bestStep?.step : undefined,
  };
  const path = await run.checkpoints.save(
    loop.done,
    loop.sampler,
    run.start.tokensSeen + loop.tokens,
    best ?? undefined,
    run.plateau?.state,
  );
  loop.lastCheckpoint = loop.done;
  run.ring.lastCheckpoint = path;
  run.observer.emit({ type: 'checkpoint', step: loop.done, path });
}

/** reduce_lr_on_plateau after an evaluation: the next steps' LR, said when it falls. */
function notePlateau(run: RunContext, step: number, e: EvalResult): void {
  const plateau = run.plateau!;
  const before = plateau.reductions;
  plateau.evaluated(step, e);
  if (plateau.reductions === before) return;
  const line =
    `lr reduced to ${plateau.lrNow.toExponential(3)} after the evaluation at step ${step}: ` +
    `its ${run.plan.lrPlateau!.metric} stopped improving (--schedule reduce_lr_on_plateau)`;
  console.log(line);
  run.observer.note('info', line);
}
