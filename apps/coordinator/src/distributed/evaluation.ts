// Held-out loss of a distributed run (--eval-data): each ring member
// evaluates its shard of the eval rows at a step boundary and the coordinator
// combines the sums, so N workers report the loss one process would. KTO's
// loss reads a KL estimate over the whole held-out set: a first round adds
// every shard's KL sums, a second sends the estimate with the loss request.
import { shard } from '@lorafleet/data';
import {
  FEEDBACK_NAMES,
  type KtoLogs,
  type LossUnit,
  ktoKl,
  ktoReadsKl,
  lossUnitOf,
} from '@lorafleet/models';
import type { EvalRequest } from '@lorafleet/protocol';
import { type PairLogs, type TokenLogs, feedbackLogs } from './feedback-logs.js';
import type { RunObserver } from '../observe/observer.js';
import { TrainingDiverged } from './divergence.js';
import { FleetError, type WorkerFleet } from './fleet.js';
import { type ElasticRing, withRecovery } from './recovery.js';
import type { RunPlan } from './run-plan.js';
import type { RunConfig } from '@lorafleet/worker';

/** Bound on one evaluation (a large eval set on a slow backend). */
const EVAL_TIMEOUT_MS = 1_800_000;

export interface EvalResult {
  loss: number;
  /** The loss's units: tokens, preference pairs or KTO's examples. */
  tokens: number;
  /** A preference objective: TRL's reward and log-probability metrics over the pairs. */
  pairs?: PairLogs;
  /** KTO: TRL's reward and log-probability metrics and the held-out set's KL estimate. */
  kto?: KtoLogs;
  /** The token loss: TRL's SFT metrics (eval_mean_token_accuracy, eval_entropy). */
  sft?: TokenLogs;
}

/** What the run's loss is divided by: tokens, pairs, or KTO's examples. */
export const lossUnit = (config: Pick<RunConfig, 'objective'>): LossUnit =>
  lossUnitOf(config.objective?.kind ?? 'sft');

/** A held-out loss for the log; `tokens` counts the run's loss units. */
export const describeEval = (e: EvalResult, config: Pick<RunConfig, 'objective'>) =>
  config.objective
    ? `${e.loss.toFixed(4)} (${FEEDBACK_NAMES[config.objective.kind]} loss, ${e.tokens} ${lossUnit(config)}` +
      (e.pairs
        ? `; reward accuracy ${e.pairs.rewardAccuracy.toFixed(4)}, margin ${e.pairs.rewardMargin.toFixed(4)})`
        : e.kto
          ? `; KL ${e.kto.kl.toFixed(4)}${e.kto.rewardMargin === undefined ? '' : `, margin ${e.kto.rewardMargin.toFixed(4)}`})`
          : ')')
    : `${e.loss.toFixed(4)} (perplexity ${Math.exp(e.loss).toFixed(2)}, ${e.tokens} tokens` +
      (e.sft
        ? `; token accuracy ${e.sft.meanTokenAccuracy.toFixed(4)}, entropy ${e.sft.entropy.toFixed(4)})`
        : ')');

/** Whether the held-out loss reads KTO's KL estimate (loss type kto), which takes a round of its own. */
const readsKl = ({ objective }: Pick<RunConfig, 'objective'>) =>
  objective?.kind === 'kto' && ktoReadsKl(objective);

/**
 * The held-out loss at a step boundary: null without eval data. Workers lost
 * meanwhile: the ring re-forms and the evaluation runs again.
 */
export function heldOut(
  fleet: WorkerFleet,
  ring: ElasticRing,
  plan: RunPlan,
  observer: RunObserver,
) {
  const ids = Array.from({ length: plan.evalRows }, (_, i) => i);
  return async (done: number): Promise<EvalResult | null> => {
    if (plan.evalRows === 0) return null;
    let result: EvalResult = { loss: NaN, tokens: 0 };
    await withRecovery(ring, done, async () => {
      const members = fleet.active();
      const round = async (kto: Pick<EvalRequest, 'klSumsOnly' | 'kl'>) => {
        for (const [rank, m] of members.entries()) {
          const rowIds = shard(ids, rank, members.length);
          const value = { step: done, rowIds, batchSize: plan.evalBatchSize, ...kto };
          await fleet.send(m, { case: 'evalRequest', value });
        }
        return fleet.collect('evalDone', EVAL_TIMEOUT_MS, members);
      };
      // KTO's KL estimate over the whole set: each worker sums its shard's first.
      let kl = 0;
      if (readsKl(plan.config)) {
        const sums = await round({ klSumsOnly: true, kl: 0 });
        kl = ktoKl([sums.reduce((s, r) => s + r.klSum, 0), sums.reduce((n, r) => n + r.klRows, 0)]);
      }
      const reports = await round({ klSumsOnly: false, kl });
      const tokens = reports.reduce((n, r) => n + r.tokenCount, 0);
      if (tokens === 0)
        throw new FleetError(`the eval data has no labelled ${lossUnit(plan.config)}`);
      const sum = (f: (r: (typeof reports)[number]) => number) =>
        reports.reduce((s, r) => s + f(r), 0);
      const logs = feedbackLogs(lossUnit(plan.config), reports, tokens);
      result = { loss: sum((r) => r.lossSum) / tokens, tokens, ...logs };
    });
    if (!Number.isFinite(result.loss)) {
      throw new TrainingDiverged(
        `the held-out loss at step ${done} is ${result.loss}: ` +
          (done === 0 ? 'the base model computes non-finite logits' : 'the run diverged') +
          '; no adapter was written',
      );
    }
    const { rewardAccuracy, meanTokenAccuracy, entropy } = result.pairs ?? {};
    const pairs = result.pairs
      ? {
          rewardAccuracy,
          ...(meanTokenAccuracy === undefined ? {} : { meanTokenAccuracy, entropy }),
        }
      : {};
    const kto = result.kto
      ? {
          kl: result.kto.kl,
          ...(result.kto.rewardMargin === undefined
            ? {}
            : { rewardMargin: result.kto.rewardMargin }),
        }
      : {};
    observer.emit({ type: 'eval', step: done, loss: result.loss, ...pairs, ...kto, ...result.sft });
    return result;
  };
}
