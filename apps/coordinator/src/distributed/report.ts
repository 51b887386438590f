// What a run reports: each step's metrics line: the dashboard's worker table, and the
// run's summary.json (faults and held-out losses included) with its closing lines.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { scheduledLr } from '@lorafleet/core';
import type { SamplerState } from '@lorafleet/data';
import type { KtoLogs, LossUnit } from '@lorafleet/models';
import type { StepDone } from '@lorafleet/protocol';
import type { WorkerInfo, WorkerStatus } from '../observe/events.js';
import type { Member, WorkerFleet } from './fleet.js';
import { type EvalResult, lossUnit } from './evaluation.js';
import { type PairLogs, type TokenLogs, feedbackLogs } from './feedback-logs.js';
import type { RunPlan } from './run-plan.js';
import type { TrainSeries } from '../training/resume.js';

export interface LoopResult extends TrainSeries {
  done: number;
  interrupted: boolean;
  /** --early-stopping-patience ran out before --steps. */
  stoppedEarly: boolean;
  /** The newest evaluation at an --eval-every step (the one after the last step may reuse it). */
  lastEval: { step: number; result: EvalResult } | null;
  /** Tokens trained on by this invocation. */
  tokens: number;
  /** Tokens since the run's first step (a resumed run counts the checkpoint's). */
  tokensSeen: number;
  sampler: SamplerState;
  seconds: number;
}

/** A worker's last step: computing, in the all-reduce, and waiting on the others. */
export interface StepTimings {
  computeMs: number;
  allReduceMs: number;
  waitMs: number;
}

/**
 * A committed step's line in metrics.jsonl (the loop adds epoch, seconds,
 * evalLoss); `lrReductions`: the step's reduce_lr_on_plateau reductions.
 */
export function stepMetrics(
  plan: RunPlan,
  step: number,
  reports: readonly StepDone[],
  lrReductions = 0,
) {
  const { config } = plan;
  // Loss from the reduced sums: every rank's loss sum over every rank's tokens.
  const tokens = reports.reduce((n, r) => n + r.tokenCount, 0);
  const loss = reports.reduce((s, r) => s + r.lossSum, 0) / tokens;
  const gradNorm = reports[0]!.gradNorm;
  const max = (f: (r: StepDone) => number) => Math.max(...reports.map(f)) / 1000;
  const allReduceShare =
    reports.reduce((s, r) => {
      const t = r.timings;
      return s + t.allreduceMs / Math.max(1e-9, t.computeMs + t.allreduceMs + t.updateMs);
    }, 0) / reports.length;
  return {
    step,
    loss,
    lr: scheduledLr(config.optimizer.lr, config.schedule, step - 1, lrReductions),
    tokens,
    gradNorm,
    workers: reports.length,
    computeSeconds: max((r) => r.timings.computeMs),
    allReduceSeconds: max((r) => r.timings.allreduceMs),
    allReduceShare,
    ...trainLogs(lossUnit(config), reports, tokens),
    ...(Number.isFinite(gradNorm) ? {} : { skipped: 'non-finite gradient' }),
  };
}

/**
 * A step's logs over every rank's units, as TRL logs them in training
 * (rewards/*, logps/*; KTO's kl; SFT's mean_token_accuracy and entropy),
 * flat in the step's line.
 */
function trainLogs(
  unit: LossUnit,
  reports: readonly StepDone[],
  units: number,
): Partial<PairLogs> & Partial<KtoLogs> & Partial<TokenLogs> {
  const { pairs, kto, sft } = feedbackLogs(unit, reports, units);
  return pairs ?? kto ?? sft ?? {};
}

/** The dashboard's worker table: every worker seen, with its last step's timings. */
export function workerTable(fleet: WorkerFleet, timings: Map<Member, StepTimings>): WorkerInfo[] {
  const ringSize = fleet.active().length;
  const status = (m: Member): WorkerStatus =>
    m.status === 'active'
      ? 'training'
      : m.status === 'ready'
        ? 'ready'
        : m.status === 'lost' || m.status === 'left'
          ? m.status
          : 'starting';
  return fleet.members().map((m) => ({
    rank: m.rank,
    workerId: m.hello?.workerId ?? m.name,
    host: m.hello?.host ?? '',
    pid: m.hello?.pid ?? m.process?.pid ?? 0,
    device: m.hello?.device ?? '',
    backend: m.hello?.backend ?? '',
    status: status(m),
    lastHeartbeatMs: m.lastHeartbeatMs,
    rssBytes: m.rssBytes,
    ...(timings.get(m) ?? { computeMs: 0, allReduceMs: 0, waitMs: 0 }),
    ringNext: m.rank < 0 ? -1 : (m.rank + 1) % ringSize,
  }));
}

export async function writeSummary(
  out: string,
  plan: RunPlan,
  r: LoopResult & {
    workers: number;
    saved: string;
    faults: {
      workersLost: number;
      workersJoined: number;
      /** The smallest ring the run trained on. */
      fewestWorkers: number;
      recoverySeconds: number[];
    };
    evalLossBefore: number | null;
    evalLossAfter: number | null;
    /** The step whose parameters were saved, and the best evaluation (--load-best-model-at-end). */
    savedStep: number;
    best: { step: number; value: number } | null;
  },
): Promise<void> {
  const { head, tail } = ends(r.losses);
  const accuracy = r.rewardAccuracies.length > 0 ? ends(r.rewardAccuracies) : null;
  const summary = {
    model: plan.config.modelDir,
    mode: plan.config.mode,
    ...(plan.config.objective
      ? { objective: plan.config.objective.kind, lossUnit: lossUnit(plan.config) }
      : {}),
    steps: r.done,
    interrupted: r.interrupted,
    ...(plan.bestModel
      ? {
          stoppedEarly: r.stoppedEarly,
          best: r.best && { metric: plan.bestModel.metric, ...r.best },
          savedStep: r.savedStep,
        }
      : {}),
    trainLossFirst10: mean(head),
    trainLossLast10: mean(tail),
    ...(accuracy
      ? {
          trainRewardAccuracyFirst10: mean(accuracy.head),
          trainRewardAccuracyLast10: mean(accuracy.tail),
        }
      : {}),
    evalLossBefore: r.evalLossBefore,
    evalLossAfter: r.evalLossAfter,
    trainableParameters: plan.trainableParameters,
    totalParameters: plan.totalParameters,
    tokens: r.tokensSeen,
    seconds: r.seconds,
    tokensPerSecond: r.tokens / r.seconds,
    backend: plan.backend,
    workers: r.workers,
    wireDtype: plan.config.wireDtype,
    faults: r.faults,
    saved: r.saved,
  };
  await writeFile(join(out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  console.log(
    `done${r.interrupted ? ' (interrupted)' : r.stoppedEarly ? ' (stopped early)' : ''}: ${r.done} steps on ${r.workers} worker${r.workers === 1 ? '' : 's'} in ${r.seconds.toFixed(1)} s, ` +
      `${summary.tokensPerSecond.toFixed(0)} ${lossUnit(plan.config)}/s; train loss ${summary.trainLossFirst10.toFixed(4)} ` +
      `(first ${head.length} step${head.length === 1 ? '' : 's'}) -> ${summary.trainLossLast10.toFixed(4)} (last ${tail.length})` +
      (accuracy
        ? `; reward accuracy ${mean(accuracy.head).toFixed(2)} -> ${mean(accuracy.tail).toFixed(2)}`
        : ''),
  );
  const what = plan.config.mode === 'full' ? 'model' : 'adapter (PEFT layout)';
  const of =
    r.savedStep === r.done
      ? ''
      : ` of step ${r.savedStep}, the best evaluated (${plan.bestModel?.metric} ${r.best?.value.toFixed(4)})`;
  console.log(`saved ${what}${of}: ${r.saved}; metrics: ${join(out, 'metrics.jsonl')}`);
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * A series' first and last 10 steps; in a run shorter than 20 the two
 * halves, so they never overlap (a 10-step run would compare its 10 steps
 * with themselves).
 */
function ends(xs: number[]): { head: number[]; tail: number[] } {
  const window = Math.max(1, Math.min(10, Math.floor(xs.length / 2)));
  return { head: xs.slice(0, Math.min(window, xs.length)), tail: xs.slice(-window) };
}
