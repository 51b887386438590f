// Softmax cross-entropy over the vocabulary with an ignore index, as one
// differentiable op. On cpu and wasm it runs the fused kernels of
// backend/softmax-xent.ts: the forward keeps only the per-row log-sum-exp, the
// backward writes dlogits in one pass. On webgpu it runs the WGSL kernels of
// backend/webgpu-kernels/cross-entropy.ts. Other backends (tfjs-node, webgpu
// with LORAFLEET_WEBGPU_KERNELS=stock) compose the same math from tfjs ops
// under the same custom gradient.
import { SOFTMAX_XENT, SOFTMAX_XENT_GRAD } from '../backend/softmax-xent.js';
import { tf } from '../backend/tf.js';
import {
  crossEntropyRows,
  fusedCrossEntropyAvailable,
} from '../backend/webgpu-kernels/cross-entropy-op.js';

/** Whether the active backend has the fused kernels. */
function fused(): boolean {
  return tf.getKernel(SOFTMAX_XENT, tf.getBackend()) !== undefined;
}

/** Composed forward: nll [N] (0 on ignored rows) and lse [N]. */
function composedForward(logits: tf.Tensor2D, labels: tf.Tensor1D): [tf.Tensor1D, tf.Tensor1D] {
  return tf.tidy(() => {
    const [N, V] = logits.shape;
    const valid = tf.greaterEqual(labels, 0);
    const safe = tf.where(valid, labels, tf.zerosLike(labels)); // [N], ignored rows read column 0
    const lse = tf.logSumExp(logits, 1); // [N]
    const flat = tf.add(tf.mul(tf.range(0, N, 1, 'int32'), tf.scalar(V, 'int32')), safe); // [N]
    const picked = tf.gather(logits.reshape([N * V]), flat); // [N]
    // lse stays set on ignored rows: the backward's exp(logits - lse) must not overflow there.
    return [tf.where(valid, tf.sub(lse, picked), tf.zerosLike(lse)), lse];
  }) as [tf.Tensor1D, tf.Tensor1D];
}

/** Composed backward: dlogits [N, V]. */
function composedGrad(
  logits: tf.Tensor2D,
  labels: tf.Tensor1D,
  lse: tf.Tensor1D,
  dnll: tf.Tensor,
): tf.Tensor2D {
  return tf.tidy(() => {
    const V = logits.shape[1];
    const valid = tf.greaterEqual(labels, 0);
    const g = tf.where(valid, tf.broadcastTo(dnll, labels.shape), tf.zerosLike(lse)).expandDims(1); // [N, 1]
    const probs = tf.exp(tf.sub(logits, lse.expandDims(1))); // [N, V]
    const columns = tf.range(0, V, 1, 'int32').expandDims(0); // [1, V]
    const oneHot = tf.cast(tf.equal(columns, labels.expandDims(1)), 'float32'); // [N, V]
    return tf.mul(tf.sub(probs, oneHot), g) as tf.Tensor2D;
  });
}

/**
 * Per-row negative log-likelihood: nll[n] = logsumexp(logits[n]) - logits[n, labels[n]],
 * 0 where labels[n] < 0 (the ignore index). logits [N, V] float32, labels [N]
 * int32 below V. Differentiable in logits.
 */
export function softmaxCrossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Tensor1D {
  if (logits.rank !== 2)
    throw new Error(`softmaxCrossEntropy: logits must be [N, V], got [${logits.shape.join(', ')}]`);
  if (labels.dtype !== 'int32' || labels.rank !== 1 || labels.shape[0] !== logits.shape[0]) {
    throw new Error(
      `softmaxCrossEntropy: labels must be int32 [${logits.shape[0]}], got ${labels.dtype} [${labels.shape.join(', ')}]`,
    );
  }
  if (fusedCrossEntropyAvailable()) return crossEntropyRows(logits, labels);
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, y] = args as [tf.Tensor2D, tf.Tensor1D];
    const save = args[2] as tf.GradSaveFunc;
    const [nll, lse] = fused()
      ? (tf.engine().runKernel(SOFTMAX_XENT, { logits: x, labels: y }) as [
          tf.Tensor1D,
          tf.Tensor1D,
        ])
      : composedForward(x, y);
    save([x, y, lse]);
    return {
      value: nll,
      gradFunc: (dnll: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sy, slse] = saved as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D];
        const dlogits = fused()
          ? (tf.engine().runKernel(SOFTMAX_XENT_GRAD, {
              logits: sx,
              labels: sy,
              lse: slse,
              dnll,
            }) as tf.Tensor2D)
          : composedGrad(sx, sy, slse, dnll);
        return [dlogits, tf.zerosLike(sy)];
      },
    };
  });
  return op(logits, labels) as tf.Tensor1D;
}
