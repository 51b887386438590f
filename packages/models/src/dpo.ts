// Direct Preference Optimization (Rafailov et al. 2023, arXiv 2305.18290) as
// TRL's DPOTrainer computes its default "sigmoid" loss. For a pair with
// chosen response c and rejected response r after the same prompt:
//   logp(y)  = sum of log pi(y_t | y_<t) over the response's labelled tokens
//   z        = beta * ((logp(c) - ref(c)) - (logp(r) - ref(r)))
//   loss     = -log sigmoid(z) = softplus(-z)
// where ref is logp under the reference model: for a LoRA run, the base
// model with the adapter off (PEFT's disable_adapter, TRL's default for a
// PEFT model). A batch holds pairs as rows of 2T ([chosen | rejected], data's
// preference.ts); the loss is summed over pairs, so workers add their sums
// and divide by the global pair count, as tokens are for the SFT loss.
import { softmaxCrossEntropy, tf } from '@lorafleet/core';
import type { CausalLM, ForwardPassOptions } from './causal-lm.js';
import { IGNORE_INDEX, type TokenBatch, shiftedLabels } from './labels.js';

export interface DpoSettings {
  /** TRL's beta: how far the policy may move from the reference (default 0.1). */
  beta: number;
}

/** TRL's DPOConfig.beta default. */
export const DEFAULT_DPO_BETA = 0.1;

/** A pair batch [B, 2T] as 2B sequences of T: pair b's chosen at 2b, its rejected at 2b + 1. */
export function pairSequences(batch: TokenBatch): TokenBatch {
  const { batchSize: B, seqLen } = batch;
  if (seqLen % 2 !== 0) {
    throw new Error(`a preference batch's rows hold two sequences: ${seqLen} tokens is odd`);
  }
  return { ids: batch.ids, labels: batch.labels, batchSize: 2 * B, seqLen: seqLen / 2 };
}

/** Pairs in the batch with a labelled token on both sides (every pair of prepared data). */
export function countPairs(batch: TokenBatch): number {
  const seqs = pairSequences(batch);
  const T = seqs.seqLen;
  const labelled = (s: number) => {
    for (let t = 1; t < T; t++) if (seqs.labels[s * T + t] !== IGNORE_INDEX) return true;
    return false;
  };
  let n = 0;
  for (let b = 0; b < batch.batchSize; b++) if (labelled(2 * b) && labelled(2 * b + 1)) n++;
  return n;
}

/** Each sequence's summed log-probability of its labelled tokens: [S]. */
export function sequenceLogps(
  model: CausalLM,
  seqs: TokenBatch,
  options: ForwardPassOptions = {},
): tf.Tensor1D {
  const { batchSize: S, seqLen: T } = seqs;
  const V = model.modelConfig.vocabSize;
  const shifted = shiftedLabels(seqs, V); // [S * T]
  return tf.tidy(() => {
    const ids = tf.tensor2d(seqs.ids, [S, T], 'int32');
    const logits = model.forward(ids, options).reshape([S * T, V]) as tf.Tensor2D; // [S*T, V]
    const nll = softmaxCrossEntropy(logits, tf.tensor1d(shifted, 'int32')); // [S*T], 0 unlabelled
    return tf.neg(tf.sum(nll.reshape([S, T]), 1)) as tf.Tensor1D; // [S]
  });
}

/**
 * The reference's log-probabilities of a pair batch, [2B]: the model with
 * every adapter off (PEFT's disable_adapter), no dropout, nothing recorded
 * for backward. Call it outside the taped pass and pass the result in.
 */
export function referenceLogps(model: CausalLM, batch: TokenBatch): tf.Tensor1D {
  return withAdaptersOff(model, () => sequenceLogps(model, pairSequences(batch)));
}

/** Runs `fn` with every LoRA layer's adapter switched off, then back on (even on error). */
export function withAdaptersOff<T>(model: CausalLM, fn: () => T): T {
  const layers = [...model.linears(), ...model.embeddings()];
  const active = layers.map((l) => l.activeAdapter?.name ?? null);
  layers.forEach((l) => l.setActive(null));
  try {
    return fn();
  } finally {
    layers.forEach((l, i) => l.setActive(active[i]!));
  }
}

/** Per pair: z = beta ((logp(c) - ref(c)) - (logp(r) - ref(r))), [B]; logps and ref [2B]. */
export function dpoMargins(logps: tf.Tensor1D, ref: tf.Tensor1D, beta: number): tf.Tensor1D {
  return tf.tidy(() => {
    const B = logps.shape[0] / 2;
    const d = tf.sub(logps, ref).reshape([B, 2]); // [B, 2]: chosen, rejected
    const [c, r] = tf.split(d, 2, 1) as [tf.Tensor2D, tf.Tensor2D]; // [B, 1] each
    return tf.mul(tf.sub(c, r), beta).reshape([B]) as tf.Tensor1D;
  });
}

/**
 * The batch's DPO loss summed over pairs, to differentiate: the policy is
 * the model as it trains (its adapter on, `options` as for the SFT loss),
 * `ref` its reference log-probabilities (referenceLogps).
 */
export function dpoLossSum(
  model: CausalLM,
  batch: TokenBatch,
  ref: tf.Tensor1D,
  settings: DpoSettings,
  options: ForwardPassOptions = {},
): tf.Scalar {
  return tf.tidy(() => {
    const logps = sequenceLogps(model, pairSequences(batch), options); // [2B]
    const z = dpoMargins(logps, ref, settings.beta); // [B]
    return tf.sum(tf.softplus(tf.neg(z))) as tf.Scalar; // sum of -log sigmoid(z)
  });
}

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
    const ref = referenceLogps(model, batch);
    const logps = sequenceLogps(model, pairSequences(batch));
    const [r, p] = [await ref.data(), await logps.data()];
    tf.dispose([ref, logps]);
    for (let b = 0; b < batch.batchSize; b++) {
      const chosen = settings.beta * (p[2 * b]! - r[2 * b]!);
      const rejected = settings.beta * (p[2 * b + 1]! - r[2 * b + 1]!);
      const z = chosen - rejected;
      // softplus(-z), stable for either sign
      sums.lossSum += Math.max(-z, 0) + Math.log1p(Math.exp(-Math.abs(z)));
      sums.correct += chosen > rejected ? 1 : 0;
      sums.chosenSum += chosen;
      sums.rejectedSum += rejected;
      sums.pairs++;
    }
  }
  return sums;
}
