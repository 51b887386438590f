// NEFTune (Jain et al. 2023, arXiv 2310.05914): uniform noise on the input
// embeddings while training, as transformers' Trainer adds it with
// `neftune_noise_alpha` (neftune_post_forward_hook on the input embedding
// module): noise ~ U(-m, m) with m = alpha / sqrt(T * C) for an output
// [B, T, C], added to the embedding's output (LoRA's embedding adapter
// included) before anything else scales it. The noise is drawn on the host
// from the pass's seed, so every backend and replica adds the same values.
import { Rng, deriveSeed, tf } from '@lorafleet/core';

/** NEFTune's noise for embeddings [B, T, C] and `alpha` (> 0), drawn from `seed`: [B*T*C] values. */
export function neftuneValues(
  B: number,
  T: number,
  C: number,
  alpha: number,
  seed: number,
): Float32Array {
  const magnitude = alpha / Math.sqrt(T * C);
  const rng = new Rng(deriveSeed(seed, 'neftune'));
  return Float32Array.from({ length: B * T * C }, () => (2 * rng.uniform() - 1) * magnitude);
}

/** embeds [B, T, C] plus NEFTune's noise for `alpha` (> 0), drawn from `seed`. */
export function neftuneNoise(embeds: tf.Tensor3D, alpha: number, seed: number): tf.Tensor3D {
  const [B, T, C] = embeds.shape;
  const noise = neftuneValues(B, T, C, alpha, seed);
  return tf.tidy(() => tf.add(embeds, tf.tensor3d(noise, [B, T, C])));
}
