// The Llama family's tensor functions, as transformers' modeling_llama
// defines them: RMSNorm (LlamaRMSNorm) and repeat_kv (grouped-query heads).
import { reshapeTo, tf } from '@lorafleet/core';

/** [B, Hkv, T, D] -> [B, Hkv * n, T, D]: query head h reads key/value head floor(h / n), as repeat_kv. */
export function repeatKv(x: tf.Tensor4D, n: number): tf.Tensor4D {
  if (n === 1) return x;
  const [B, Hkv, T, D] = x.shape;
  // n copies side by side: a concat (copies) rather than tf.tile, whose wasm kernel indexes
  // element by element (11% of a Llama LoRA step on wasm); its gradient splits and adds.
  const one = reshapeTo(x, [B * Hkv, 1, T * D]);
  return reshapeTo(tf.concat(Array<tf.Tensor>(n).fill(one), 1), [B, Hkv * n, T, D]);
}

// LlamaRMSNorm: core's op (fused kernels for a frozen weight on cpu, wasm and webgpu).
export { rmsNorm, rmsNormComposed, rmsNormFused } from '@lorafleet/core';
