// TRL's DPOTrainer token metrics of a pair batch's responses, from the
// policy pass that scores them: at each labelled position, whether the
// logits' argmax is the label, the softmax's entropy (nats), and the mean
// of the logits over the vocabulary. Summed per sequence, they give TRL's
// mean_token_accuracy (chosen responses), entropy (both) and logits/chosen,
// logits/rejected (each side's mean over its tokens). Metrics, not losses:
// their gradient is zero.
import { tf, tokenStats } from '@lorafleet/core';
import { detached } from './wpo.js';

/** The columns responseColumns gives each position, in order. */
export const RESPONSE_COLUMNS = ['correct', 'entropy', 'meanLogit'] as const;

/** [n, 3] (RESPONSE_COLUMNS) of logits [n, V] and labels [n]; 0 where a label is the ignore index. */
export function responseColumns(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Tensor2D {
  return tf.tidy(() => {
    const stats = tokenStats(logits, labels); // [n, 2]: hit, entropy
    const valid = tf.greaterEqual(labels, 0);
    const mean = tf.where(valid, detached(tf.mean(logits, 1)), tf.zeros(labels.shape)); // [n]
    return tf.concat([stats, mean.expandDims(1)], 1) as tf.Tensor2D;
  });
}

/** Each sequence's RESPONSE_COLUMNS sums over its positions: [S*T, 3] -> [S, 3]. */
export function perSequence(columns: tf.Tensor2D, S: number, T: number): tf.Tensor2D {
  return tf.tidy(() => tf.sum(columns.reshape([S, T, RESPONSE_COLUMNS.length]), 1) as tf.Tensor2D);
}
