// TRL's per-token metrics (SFTTrainer's `mean_token_accuracy` and `entropy`)
// as one op: tokenStats(logits [N, V], labels [N]) -> [N, 2], per row whether
// the argmax is the label and the entropy of the softmax, (0, 0) where the
// label is the ignore index. On cpu and wasm it runs the kernel of
// backend/token-stats.ts, on webgpu the WGSL kernel of
// backend/webgpu-kernels/cross-entropy.ts; elsewhere the same math from tfjs
// ops. A metric, not a loss: its gradient is zero, so it may sit inside a
// checkpointed or taped function beside the loss without changing it.
import { TOKEN_STATS } from '../backend/token-stats.js';
import { tf } from '../backend/tf.js';

/** The metrics from tfjs ops: argMax (first of equal maxima) and -sum p log p. */
function composedStats(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Tensor2D {
  return tf.tidy(() => {
    const valid = tf.greaterEqual(labels, 0); // [N]
    const zeros = tf.zeros(labels.shape);
    const hit = tf.where(valid, tf.cast(tf.equal(tf.argMax(logits, 1), labels), 'float32'), zeros);
    const logp = tf.logSoftmax(logits); // [N, V]
    const entropy = tf.where(valid, tf.neg(tf.sum(tf.mul(tf.exp(logp), logp), 1)), zeros);
    return tf.stack([hit, entropy], 1) as tf.Tensor2D; // [N, 2]
  });
}

/**
 * [N, 2]: per row n, 1 where logits[n]'s first largest value is at
 * labels[n] (else 0), and the entropy of softmax(logits[n]) in nats; both 0
 * where labels[n] < 0. logits [N, V] float32, labels [N] int32 below V. Its
 * gradient is zero.
 */
export function tokenStats(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Tensor2D {
  if (logits.rank !== 2)
    throw new Error(`tokenStats: logits must be [N, V], got [${logits.shape.join(', ')}]`);
  if (labels.dtype !== 'int32' || labels.rank !== 1 || labels.shape[0] !== logits.shape[0]) {
    throw new Error(
      `tokenStats: labels must be int32 [${logits.shape[0]}], got ${labels.dtype} [${labels.shape.join(', ')}]`,
    );
  }
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, y] = args as [tf.Tensor2D, tf.Tensor1D];
    const value =
      tf.getKernel(TOKEN_STATS, tf.getBackend()) !== undefined
        ? (tf.engine().runKernel(TOKEN_STATS, { logits: x, labels: y }) as tf.Tensor2D)
        : composedStats(x, y);
    return { value, gradFunc: () => [tf.zerosLike(x), tf.zerosLike(y)] };
  });
  return op(logits, labels) as tf.Tensor2D;
}

export { composedStats as tokenStatsComposed };
