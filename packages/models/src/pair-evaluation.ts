// The preference objectives' evaluation (objective.ts): the loss and TRL's
// reward metrics over held-out pairs, as sums that the workers of a run add
// and the coordinator divides.
import { tf } from '@lorafleet/core';
import type { CausalLM } from './causal-lm.js';
import {
  averagesLogps,
  countPairs,
  dpoPairLosses,
  pairSequences,
  referenceLogps,
  sequenceLogps,
} from './dpo.js';
import type { TokenBatch } from './labels.js';
import type { PreferenceKind, PreferenceSettings } from './objective.js';
import { averageLogps, orpoPairLosses, pairRewards, simpoPairLosses } from './reference-free.js';

/** What the evaluation metrics are made of: sums over pairs, which workers add. */
export interface PairSums {
  lossSum: number;
  pairs: number;
  /** Pairs whose chosen reward exceeds the rejected one's. */
  correct: number;
  /** Summed rewards of the chosen and of the rejected responses. */
  chosenSum: number;
  rejectedSum: number;
}

/** TRL's evaluation metrics over a set of pairs. */
export interface PairEvaluation {
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
}

/** The means of `sums` (pairs > 0). */
export function pairMetrics(sums: PairSums): PairEvaluation {
  const n = sums.pairs;
  return {
    loss: sums.lossSum / n,
    pairs: n,
    rewardAccuracy: sums.correct / n,
    rewardMargin: (sums.chosenSum - sums.rejectedSum) / n,
    rewardChosen: sums.chosenSum / n,
    rewardRejected: sums.rejectedSum / n,
  };
}

/** A batch's loss per pair and the rewards of its chosen and rejected responses, [B] each. */
type PairScores = { losses: tf.Tensor1D; chosen: tf.Tensor1D; rejected: tf.Tensor1D };

const SCORES: {
  [K in PreferenceKind]: (
    model: CausalLM,
    batch: TokenBatch,
    s: Extract<PreferenceSettings, { kind: K }>,
  ) => PairScores;
} = {
  // TRL's DPO rewards: beta (logp - ref), on the log-probabilities its loss compares
  dpo: (model, batch, settings) => {
    const ref = referenceLogps(model, batch, settings); // [2B], adapters off
    try {
      return tf.tidy(() => {
        const logps = sequenceLogps(model, pairSequences(batch), {}, averagesLogps(settings));
        const [chosen, rejected] = pairRewards(tf.sub(logps, ref), settings.beta);
        return { losses: dpoPairLosses(logps, ref, settings), chosen, rejected };
      });
    } finally {
      ref.dispose();
    }
  },
  orpo: (model, batch, settings) => referenceFree(model, batch, settings, orpoPairLosses),
  simpo: (model, batch, settings) => referenceFree(model, batch, settings, simpoPairLosses),
};

function referenceFree<S extends { beta: number }>(
  model: CausalLM,
  batch: TokenBatch,
  settings: S,
  pairLosses: (avgLogps: tf.Tensor1D, s: S) => tf.Tensor1D,
): PairScores {
  return tf.tidy(() => {
    const logps = averageLogps(model, batch); // [2B]
    const [chosen, rejected] = pairRewards(logps, settings.beta);
    return { losses: pairLosses(logps, settings), chosen, rejected };
  });
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
  const sums: PairSums = { lossSum: 0, pairs: 0, correct: 0, chosenSum: 0, rejectedSum: 0 };
  const score = SCORES[settings.kind] as (
    m: CausalLM,
    b: TokenBatch,
    s: PreferenceSettings,
  ) => PairScores;
  for (const batch of batches) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (countPairs(batch) !== batch.batchSize) {
      throw new Error('a preference batch holds a pair without a labelled response token');
    }
    await beforeBatch?.();
    const scores = score(model, batch, settings);
    const [l, c, r] = await Promise.all(
      [scores.losses, scores.chosen, scores.rejected].map((t) => t.data()),
    );
    tf.dispose([scores.losses, scores.chosen, scores.rejected]);
    for (let b = 0; b < batch.batchSize; b++) {
      sums.lossSum += l![b]!;
      sums.correct += c![b]! > r![b]! ? 1 : 0;
      sums.chosenSum += c![b]!;
      sums.rejectedSum += r![b]!;
      sums.pairs++;
    }
  }
  return sums;
}
