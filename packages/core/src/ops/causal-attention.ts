// Causal scaled dot-product attention as one differentiable op:
// softmax(scale q k^T + mask) v over q, k, v [.., T, D]. On webgpu with the
// project's kernels it never builds the [.., T, T] scores or probabilities
// (backend/webgpu-kernels/attention.ts: recomputed in the backward, memory
// linear in T, dropout on the probabilities drawn in the kernels); elsewhere
// the composed tfjs ops (the model families' own formula). Both draw the same
// dropout mask: seededDropout's over the [.., T, T] probabilities.
import { tf } from '../backend/tf.js';
import { dropoutKeys, seededDropout } from './dropout.js';
import { addConstant, scaleBy } from './shape-only.js';
import {
  ATTN_DELTA,
  ATTN_GRAD,
  ATTN_OUT,
  ATTN_STATS,
  type AttnAttrs,
  type AttnGradWrt,
  fusedAttentionAvailable,
} from '../backend/webgpu-kernels/attention.js';

export interface CausalAttentionOptions {
  /** Multiplies q k^T (1 / sqrt(D) in GPT-2 and Llama). */
  scale: number;
  /** [T, T] (or broadcastable): 0 where a query may see a key, a large negative number elsewhere. */
  mask: tf.Tensor;
  /** Dropout on the probabilities (training): seededDropout(probs, rate, seed)'s mask. */
  dropout?: { rate: number; seed: number };
  /**
   * A sliding window (Mistral's): query i sees keys i - window + 1 .. i. The
   * fused path applies it; the composed path reads it from `mask`, which must
   * then carry it too. Absent or null: every earlier key.
   */
  window?: number | null;
  /**
   * Gemma 2's soft-capping of the scores before the mask: cap tanh(s / cap).
   * Both paths compute it (the fused kernels in their scores and gradients).
   */
  softcap?: number | null;
}

/** softmax(softcap(scale q k^T) + mask) v from tfjs ops (autodiff through them). */
export function causalAttentionComposed(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  o: CausalAttentionOptions,
): tf.Tensor {
  return tf.tidy(() => {
    // The scale and the mask keep nothing for backward (shape-only.ts): of the [.., T, T]
    // tensors only the probabilities are kept (and, with a soft cap, its tanh's).
    const raw = scaleBy(tf.matMul(q, k, false, true), o.scale); // [.., T, T]
    const capped = o.softcap ? tf.mul(tf.tanh(tf.div(raw, o.softcap)), o.softcap) : raw;
    const scores = addConstant(capped, o.mask);
    const probs = tf.softmax(scores);
    const dropped = o.dropout ? seededDropout(probs, o.dropout.rate, o.dropout.seed) : probs;
    return tf.matMul(dropped, v); // [.., T, D]
  });
}

/**
 * y [.., T, D] = softmax(scale q k^T + causal mask) v for q, k, v [.., T, D]
 * (equal shapes: grouped-query heads repeated by the caller). The fused path
 * assumes `mask` is the causal mask (with `window`, the windowed one); it
 * does not read it.
 */
export function causalAttention(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  o: CausalAttentionOptions,
): tf.Tensor {
  if (!fusedAttentionAvailable()) return causalAttentionComposed(q, k, v, o);
  const shape = q.shape;
  const [T, D] = shape.slice(-2) as [number, number];
  const rows = (x: tf.Tensor) => x.reshape([-1, T, D]) as tf.Tensor3D; // [R, T, D]
  const rate = o.dropout?.rate ?? 0;
  const attrs: AttnAttrs = {
    scale: o.scale,
    dropRate: rate,
    window: o.window ?? 0,
    softcap: o.softcap ?? 0,
  };
  const drop = rate > 0 ? dropoutKeys(o.dropout!.seed, rate) : null;
  const kernel = (name: string, inputs: tf.NamedTensorMap, extra: object = {}) =>
    tf.tidy(() => {
      // The mask's keys [2] for the kernels it changes (not the statistics or delta).
      const masked = drop && (name === ATTN_OUT || name === ATTN_GRAD);
      const keys: tf.NamedTensorMap = masked
        ? { keys: tf.tensor1d([drop.k1 | 0, drop.k2 | 0], 'int32') }
        : {};
      const all = { ...inputs, ...keys };
      return tf.engine().runKernel(name, all, { ...attrs, ...extra } as never) as tf.Tensor;
    });
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [q3, k3, v3] = (args as tf.Tensor[]).map(rows) as [tf.Tensor, tf.Tensor, tf.Tensor];
    const lse = kernel(ATTN_STATS, { q: q3, k: k3 }); // [R, T]
    const out = kernel(ATTN_OUT, { q: q3, k: k3, v: v3, lse }); // [R, T, D]
    save([q3, k3, v3, out, lse]);
    return {
      value: out.reshape(shape),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sq, sk, sv, so, sl] = saved as [
          tf.Tensor,
          tf.Tensor,
          tf.Tensor,
          tf.Tensor,
          tf.Tensor,
        ];
        const dy3 = rows(dy);
        const delta = kernel(ATTN_DELTA, { dy: dy3, o: so }); // [R, T]
        const inputs = { q: sq, k: sk, v: sv, dy: dy3, lse: sl, delta };
        const grad = (wrt: AttnGradWrt) => kernel(ATTN_GRAD, inputs, { wrt }).reshape(shape);
        return [grad('q'), grad('k'), grad('v')];
      },
    };
  });
  return op(q, k, v);
}
