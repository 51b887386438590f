// The preference objectives' evaluation: the loss and TRL's reward metrics
// over held-out pairs (scored as in training, preference.ts), as sums that
// the workers of a run add and the coordinator divides.
import { tf } from '@lorafleet/core';
import type { CausalLM } from './causal-lm.js';
import { countPairs } from './dpo.js';
import type { TokenBatch } from './labels.js';
import {
  type PreferenceSettings,
  type RewardSums,
  preparePairs,
  rewardStats,
} from './preference.js';

/** What the evaluation metrics are made of: sums over pairs, which workers add. */
export interface PairSums extends RewardSums {
  lossSum: number;
  pairs: number;
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
  for (const batch of batches) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (countPairs(batch) !== batch.batchSize) {
      throw new Error('a preference batch holds a pair without a labelled response token');
    }
    await beforeBatch?.();
    const pairs = preparePairs(model, batch, settings);
    let read: tf.Tensor1D;
    try {
      // [4]: the summed loss, then rewardStats' correct, chosen and rejected sums
      read = tf.tidy(() => {
        const scores = pairs.scores({});
        return tf.concat([tf.sum(scores.losses).reshape([1]), rewardStats(scores)]) as tf.Tensor1D;
      });
    } finally {
      pairs.dispose();
    }
    const [lossSum, correct, chosenSum, rejectedSum] = await read.data();
    read.dispose();
    sums.lossSum += lossSum!;
    sums.correct += correct!;
    sums.chosenSum += chosenSum!;
    sums.rejectedSum += rejectedSum!;
    sums.pairs += batch.batchSize;
  }
  return sums;
}
