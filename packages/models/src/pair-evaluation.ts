// The preference objectives' evaluation: the loss and TRL's reward metrics
// over held-out pairs (scored as in training, preference.ts), as sums that
// the workers of a run add and the coordinator divides.
import { tf } from '@lorafleet/core';
import type { CausalLM } from './causal-lm.js';
import { countPairs } from './pair-logps.js';
import type { TokenBatch } from './labels.js';
import {
  PAIR_STATS,
  type PairStatSums,
  type PreferenceSettings,
  pairStatSums,
  pairStats,
  preparePairs,
} from './preference.js';

/** What the evaluation metrics are made of: sums over pairs, which workers add. */
export interface PairSums extends PairStatSums {
  lossSum: number;
  pairs: number;
}

/**
 * TRL's evaluation metrics over a set of pairs; with DPO, its token metrics
 * too; with ORPO (SimPO, CPO), its NLL and log-odds logs.
 */
export interface PairEvaluation extends Partial<ResponseTokenLogs>, Partial<NllLogs> {
  /** Mean loss per pair. */
  loss: number;
  pairs: number;
  /** Share of pairs whose chosen reward exceeds the rejected one (TRL's rewards/accuracies). */
  rewardAccuracy: number;
  /** Mean chosen - rejected reward (rewards/margins). */
  rewardMargin: number;
  /** Mean reward of the chosen and of the rejected responses (rewards/chosen, rewards/rejected). */
  rewardChosen: number;
  rewardRejected: number;
  /** Mean policy log-probability the loss compares, chosen and rejected (logps/chosen, logps/rejected). */
  logpsChosen: number;
  logpsRejected: number;
}

/** TRL's DPOTrainer token metrics: means over the responses' labelled tokens. */
export interface ResponseTokenLogs {
  /** Share of the chosen responses' tokens the argmax predicts (mean_token_accuracy). */
  meanTokenAccuracy: number;
  /** Mean entropy (nats) over both responses' tokens (entropy). */
  entropy: number;
  /** Mean over each side's tokens of the logits' mean over the vocabulary (logits/chosen, logits/rejected). */
  logitsChosen: number;
  logitsRejected: number;
}

/** TRL's ORPOTrainer's and CPOTrainer's logs of the NLL term and of ORPO's log odds: means over pairs. */
export interface NllLogs {
  /** The NLL term before its weight (nll_loss): ORPO's; SimPO's and CPO's with an alpha. */
  nllLoss: number;
  /** ORPO: log sigmoid of the log odds ratio (log_odds_ratio). */
  logOddsRatio: number;
  /** ORPO: the log odds ratio of chosen over rejected (log_odds_chosen). */
  logOddsChosen: number;
}

/** NllLogs of `sums`, each where some pair has it. */
function nllLogs(sums: PairStatSums): Partial<NllLogs> {
  const { nllPairs, oddsPairs } = sums;
  return {
    ...(nllPairs > 0 ? { nllLoss: sums.nllSum / nllPairs } : {}),
    ...(oddsPairs > 0
      ? {
          logOddsRatio: sums.logOddsRatioSum / oddsPairs,
          logOddsChosen: sums.logOddsChosenSum / oddsPairs,
        }
      : {}),
  };
}

/** ResponseTokenLogs of `sums`, or nothing where they count no token (not DPO). */
function responseTokenLogs(sums: PairStatSums): ResponseTokenLogs | Record<string, never> {
  const { chosenTokens: c, rejectedTokens: r } = sums;
  if (c + r === 0) return {};
  // TRL's 0.0 where a side has no token
  const per = (sum: number, n: number) => (n > 0 ? sum / n : 0);
  return {
    meanTokenAccuracy: per(sums.chosenCorrectTokens, c),
    entropy: per(sums.entropySum, c + r),
    logitsChosen: per(sums.chosenLogitSum, c),
    logitsRejected: per(sums.rejectedLogitSum, r),
  };
}

/** The means of `sums` (pairs > 0). */
export function pairMetrics(sums: PairSums): PairEvaluation {
  const n = sums.pairs;
  return {
    ...responseTokenLogs(sums),
    ...nllLogs(sums),
    loss: sums.lossSum / n,
    pairs: n,
    rewardAccuracy: sums.correct / n,
    rewardMargin: (sums.chosenSum - sums.rejectedSum) / n,
    rewardChosen: sums.chosenSum / n,
    rewardRejected: sums.rejectedSum / n,
    logpsChosen: sums.chosenLogpSum / n,
    logpsRejected: sums.rejectedLogpSum / n,
  };
}

/**
 * The loss and reward sums of `model` as it is (adapter on; DPO against
 * itself with the adapter off), read asynchronously and yielding between
 * batches (a worker keeps heartbeating through a long evaluation).
 */
export async function evaluatePairs(
  model: CausalLM,
  batches: Iterable<TokenBatch>,
  settings: PreferenceSettings,
  /** Awaited before each batch's (blocking) forward passes. */
  beforeBatch?: () => Promise<void>,
): Promise<PairSums> {
  const sums: PairSums = { lossSum: 0, pairs: 0, ...pairStatSums([]) };
  for (const batch of batches) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (countPairs(batch) !== batch.batchSize) {
      throw new Error('a preference batch holds a pair without a labelled response token');
    }
    await beforeBatch?.();
    const pairs = preparePairs(model, batch, settings);
    let read: tf.Tensor1D;
    try {
      // [1 + 16]: the summed loss, then pairStats' (PAIR_STATS)
      read = tf.tidy(() => {
        const scores = pairs.scores({});
        return tf.concat([tf.sum(scores.losses).reshape([1]), pairStats(scores)]) as tf.Tensor1D;
      });
    } finally {
      pairs.dispose();
    }
    const values = await read.data();
    read.dispose();
    sums.lossSum += values[0]!;
    const batchSums = pairStatSums(values.subarray(1));
    for (const k of PAIR_STATS) sums[k] += batchSums[k];
    sums.pairs += batch.batchSize;
  }
  return sums;
}
