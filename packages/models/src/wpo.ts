// WPO (Zhou et al. 2024, arXiv 2406.11827, Eq. 2), as TRL's DPOTrainer
// applies it with use_weighting: each pair's loss times w(chosen) *
// w(rejected), where a response's weight is its length-normalised
// probability under the policy, each token's divided by the sum of the
// squared probabilities at its position:
//   w = exp(mean over labelled t of (log p_t(y_t) - log sum_v p_t(v)^2))
// The weights carry no gradient (TRL computes them under no_grad).
import { tf } from '@lorafleet/core';
import { IGNORE_INDEX, type TokenBatch, shiftedLabels } from './labels.js';

/** x's value with a zero gradient (torch's detach). */
export function detached<T extends tf.Tensor>(x: T): T {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    return { value: tf.clone(input), gradFunc: () => [tf.zerosLike(input)] };
  });
  return op(x) as T;
}

/** [N]: log sum_v softmax(logits[n])_v^2 = logsumexp(2 z) - 2 logsumexp(z), with a zero gradient. */
export function logSumSquaredProbs(logits: tf.Tensor2D): tf.Tensor1D {
  return detached(
    tf.tidy(() => tf.sub(tf.logSumExp(tf.mul(logits, 2), 1), tf.mul(tf.logSumExp(logits, 1), 2))),
  ) as tf.Tensor1D;
}

/**
 * Each sequence's WPO weight [S], from each position's negative
 * log-likelihood and logSumSquaredProbs [S*T] (0 where unlabelled, as
 * positionColumns gives them); no gradient flows through it.
 */
export function wpoWeights(
  nll: tf.Tensor1D,
  denominator: tf.Tensor1D,
  seqs: TokenBatch,
  vocabSize: number,
): tf.Tensor1D {
  const { batchSize: S, seqLen: T } = seqs;
  const shifted = shiftedLabels(seqs, vocabSize);
  const labelled = Float32Array.from(shifted, (l) => (l === IGNORE_INDEX ? 0 : 1)); // [S*T]
  return tf.tidy(() => {
    const mask = tf.tensor2d(labelled, [S, T]);
    const aligned = tf.mul(tf.sub(tf.neg(detached(nll)), denominator).reshape([S, T]), mask);
    const counts = tf.maximum(tf.sum(mask, 1), 1); // [S]
    return tf.exp(tf.div(tf.sum(aligned, 1), counts)) as tf.Tensor1D; // [S]
  });
}
