// Rotary position embeddings as transformers computes them
// (modeling_rope_utils.py, LlamaRotaryEmbedding): inverse frequencies
// theta^(-2i/D), adjusted by rope_scaling, and the rotate-half convention:
// x * cos + rotate_half(x) * sin, with cos/sin = cat(freqs, freqs).
import { tf } from '@lorafleet/core';
import type { LlamaConfig } from './config.js';

/** The D/2 inverse frequencies of one head, after rope_scaling. */
export function inverseFrequencies(c: LlamaConfig): Float64Array {
  const D = c.headDim;
  const inv = Float64Array.from(
    { length: D / 2 },
    (_, i) => 1 / Math.pow(c.ropeTheta, (2 * i) / D),
  );
  const s = c.ropeScaling;
  if (s === null) return inv;
  if (s.type === 'linear') return inv.map((f) => f / s.factor);
  // llama3: long wavelengths slowed by `factor`, short ones kept, a smooth blend between.
  const lowFreqWavelen = s.originalMaxPositions / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositions / s.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) return f;
    if (wavelen > lowFreqWavelen) return f / s.factor;
    const smooth =
      (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

/** cos and sin [B, 1, T, D] for position ids [B, T], computed in float64 then stored as float32. */
export function rotaryTables(
  invFreq: Float64Array,
  positions: Int32Array,
  B: number,
  T: number,
): { cos: tf.Tensor4D; sin: tf.Tensor4D } {
  const { cos, sin } = rotaryValues(invFreq, positions);
  const D = 2 * invFreq.length;
  return { cos: tf.tensor4d(cos, [B, 1, T, D]), sin: tf.tensor4d(sin, [B, 1, T, D]) };
}

/** The values of rotaryTables: [positions.length, D] each, row-major. */
export function rotaryValues(
  invFreq: Float64Array,
  positions: Int32Array,
): { cos: Float32Array; sin: Float32Array } {
  const half = invFreq.length;
  const D = 2 * half;
  const cos = new Float32Array(positions.length * D);
  const sin = new Float32Array(positions.length * D);
  for (let n = 0; n < positions.length; n++) {
    const p = positions[n]!;
    for (let i = 0; i < half; i++) {
      const angle = p * invFreq[i]!;
      const [c, s] = [Math.cos(angle), Math.sin(angle)];
      cos[n * D + i] = cos[n * D + half + i] = c;
      sin[n * D + i] = sin[n * D + half + i] = s;
    }
  }
  return { cos, sin };
}

/** x [B, H, T, D] rotated: x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1). */
export function applyRotary(x: tf.Tensor4D, cos: tf.Tensor4D, sin: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const [x1, x2] = tf.split(x, 2, 3);
    const rotated = tf.concat([tf.neg(x2!), x1!], 3);
    return tf.add(tf.mul(x, cos), tf.mul(rotated, sin)) as tf.Tensor4D;
  });
}
