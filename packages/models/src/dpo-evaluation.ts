// DPO's evaluation (dpo.ts): the loss and TRL's reward metrics over held-out
// pairs, as sums that the workers of a run add and the coordinator divides.
import { tf } from '@lorafleet/core';
import type { CausalLM } from './causal-lm.js';
import {
  type DpoSettings,
  averagesLogps,
  countPairs,
  dpoPairLosses,
  pairSequences,
  referenceLogps,
  sequenceLogps,
} from './dpo.js';
import type { TokenBatch } from './labels.js';

/** What DPO's evaluation metrics are made of: sums over pairs, which workers add. */
export interface DpoSums {
  lossSum: number;
  pairs: number;
  /** Pairs whose chosen reward exceeds the rejected one's. */
  correct: number;
  /** Summed beta (logp - ref) of the chosen and of the rejected responses. */
  chosenSum: number;
  rejectedSum: number;
}

/** TRL's DPO evaluation metrics over a set of pairs (rewards are beta x log-ratios). */
export interface DpoEvaluation {
  /** Mean DPO loss per pair. */
  loss: number;
  pairs: number;
  /** Share of pairs whose chosen reward exceeds the rejected one (TRL's rewards/accuracies). */
  rewardAccuracy: number;
  /** Mean chosen - rejected reward (rewards/margins). */
  rewardMargin: number;
  /** Mean beta (logp - ref) of the chosen and of the rejected responses (rewards/chosen, rewards/rejected). */
  rewardChosen: number;
  rewardRejected: number;
}

/** The means of `sums` (pairs > 0). */
export function dpoMetrics(sums: DpoSums): DpoEvaluation {
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
 * DPO's loss and reward sums of `model` (adapter on) against itself with the
 * adapter off, read asynchronously and yielding between batches (a worker
 * keeps heartbeating through a long evaluation).
 */
export async function evaluateDpo(
  model: CausalLM,
  batches: Iterable<TokenBatch>,
  settings: DpoSettings,
  /** Awaited before each batch's (blocking) forward passes. */
  beforeBatch?: () => Promise<void>,
): Promise<DpoSums> {
  const sums: DpoSums = { lossSum: 0, pairs: 0, correct: 0, chosenSum: 0, rejectedSum: 0 };
  for (const batch of batches) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (countPairs(batch) !== batch.batchSize) {
      throw new Error('a preference batch holds a pair without a labelled response token');
    }
    await beforeBatch?.();
    const ref = referenceLogps(model, batch, settings); // [2B]
    const logps = sequenceLogps(model, pairSequences(batch), {}, averagesLogps(settings)); // [2B]
    const losses = dpoPairLosses(logps, ref, settings); // [B]
    const [r, p, l] = [await ref.data(), await logps.data(), await losses.data()];
    tf.dispose([ref, logps, losses]);
    for (let b = 0; b < batch.batchSize; b++) {
      // TRL's rewards: beta (logp - ref), on the log-probabilities its loss compares
      const chosen = settings.beta * (p[2 * b]! - r[2 * b]!);
      const rejected = settings.beta * (p[2 * b + 1]! - r[2 * b + 1]!);
      sums.lossSum += l[b]!;
      sums.correct += chosen > rejected ? 1 : 0;
      sums.chosenSum += chosen;
      sums.rejectedSum += rejected;
      sums.pairs++;
    }
  }
  return sums;
}
