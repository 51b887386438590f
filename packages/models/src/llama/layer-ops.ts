// The Llama family's tensor functions, as transformers' modeling_llama
// defines them: RMSNorm (LlamaRMSNorm) and repeat_kv (grouped-query heads).
import { fusedNorm, fusedNormAvailable, reshapeTo, tf } from '@lorafleet/core';

/** [B, Hkv, T, D] -> [B, Hkv * n, T, D]: query head h reads key/value head floor(h / n), as repeat_kv. */
export function repeatKv(x: tf.Tensor4D, n: number): tf.Tensor4D {
  if (n === 1) return x;
  const [B, Hkv, T, D] = x.shape;
  // n copies side by side: a concat (copies) rather than tf.tile, whose wasm kernel indexes
  // element by element (11% of a Llama LoRA step on wasm); its gradient splits and adds.
  const one = reshapeTo(x, [B * Hkv, 1, T * D]);
  return reshapeTo(tf.concat(Array<tf.Tensor>(n).fill(one), 1), [B, Hkv * n, T, D]);
}

/** x / sqrt(mean(x^2) + eps) * weight over the last axis, as LlamaRMSNorm. */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor1D, eps: number): tf.Tensor {
  // webgpu, frozen weight: core's fused kernels (webgpu-kernels/norm.ts).
  if (fusedNormAvailable(weight)) return fusedNorm(x, weight, null, eps, 'rms');
  return rmsNormComposed(x, weight, eps);
}

export function rmsNormComposed(x: tf.Tensor, scale: tf.Tensor, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const variance = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(variance, eps))), scale);
  });
}
