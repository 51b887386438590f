// Rotary position embeddings as transformers computes them
// (modeling_rope_utils.py, LlamaRotaryEmbedding): inverse frequencies
// theta^(-2i/R), adjusted by rope_scaling, and the rotate-half convention:
// x * cos + rotate_half(x) * sin, with cos/sin = cat(freqs, freqs). R is the
// head width D, or with Phi-3's partial_rotary_factor its leading R dims
// (the rest pass unrotated); LongRoPE and YaRN also scale cos and sin. GLM
// turns adjacent pairs instead (interleaved: cos = repeat_interleave(freqs, 2)).
import { addSame, mulConstant, rotary, rotaryFusable, tf } from '@lorafleet/core';
import { type LlamaConfig, type RopeScaling, rotaryDim } from './config.js';

/**
 * The R/2 inverse frequencies of one head, after rope_scaling, for a pass
 * over positions below `length` (LongRoPE's factors depend on it).
 */
export function inverseFrequencies(c: LlamaConfig, length = 0): Float64Array {
  const R = rotaryDim(c);
  const inv = Float64Array.from(
    { length: R / 2 },
    (_, i) => 1 / Math.pow(c.ropeTheta, (2 * i) / R),
  );
  const s = c.ropeScaling;
  if (s === null) return inv;
  if (s.type === 'linear') return inv.map((f) => f / s.factor);
  if (s.type === 'longrope') {
    // Each frequency divided by its factor: the long ones when the pass reaches past
    // original_max_position_embeddings (transformers: max(position_ids) + 1 > it), else the short.
    const factors = longFactors(c, length) ? s.longFactor : s.shortFactor;
    return inv.map((f, i) => f / factors[i]!);
  }
  if (s.type === 'yarn') return yarnFrequencies(inv, R, c.ropeTheta, s);
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

/**
 * YaRN: each frequency blended between itself (extrapolated) and itself /
 * factor (interpolated) by a linear ramp over the frequency index, between
 * the dims that complete betaFast and betaSlow turns in the original context.
 */
function yarnFrequencies(
  inv: Float64Array,
  R: number,
  theta: number,
  s: Extract<RopeScaling, { type: 'yarn' }>,
): Float64Array {
  const dimOf = (turns: number) =>
    (R * Math.log(s.originalMaxPositions / (turns * 2 * Math.PI))) / (2 * Math.log(theta));
  let [low, high] = [dimOf(s.betaFast), dimOf(s.betaSlow)];
  if (s.truncate) [low, high] = [Math.floor(low), Math.ceil(high)];
  [low, high] = [Math.max(low, 0), Math.min(high, R - 1)];
  if (low === high) high += 0.001;
  return inv.map((f, i) => {
    const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
    return (f / s.factor) * ramp + f * (1 - ramp);
  });
}

/** Whether a pass over positions below `length` takes LongRoPE's long factors. */
export function longFactors(c: LlamaConfig, length: number): boolean {
  const s = c.ropeScaling;
  return s?.type === 'longrope' && length > s.originalMaxPositions;
}

/** What cos and sin are multiplied by: LongRoPE's and YaRN's attention factor, else 1. */
export function rotaryScale(c: LlamaConfig): number {
  const s = c.ropeScaling;
  return s?.type === 'longrope' || s?.type === 'yarn' ? s.attentionFactor : 1;
}

/**
 * cos and sin [B, 1, T, R] for position ids [B, T], computed in float64 then
 * stored as float32; `invFreq` may differ by row (LongRoPE: each row's by its
 * own length).
 */
export function rotaryTables(
  invFreq: Float64Array | ((row: number) => Float64Array),
  positions: Int32Array,
  B: number,
  T: number,
  scale = 1,
  interleaved = false,
): { cos: tf.Tensor4D; sin: tf.Tensor4D } {
  const ofRow = typeof invFreq === 'function' ? invFreq : () => invFreq;
  const R = 2 * ofRow(0).length;
  const [cos, sin] = [new Float32Array(B * T * R), new Float32Array(B * T * R)];
  for (let b = 0; b < B; b++) {
    const row = rotaryValues(ofRow(b), positions.subarray(b * T, (b + 1) * T), scale, interleaved);
    cos.set(row.cos, b * T * R);
    sin.set(row.sin, b * T * R);
  }
  return { cos: tf.tensor4d(cos, [B, 1, T, R]), sin: tf.tensor4d(sin, [B, 1, T, R]) };
}

/**
 * The values of rotaryTables: [positions.length, R] each, row-major, times
 * `scale`; frequency i at dims i and i + R/2, or (`interleaved`) 2i and 2i + 1.
 */
export function rotaryValues(
  invFreq: Float64Array,
  positions: Int32Array,
  scale = 1,
  interleaved = false,
): { cos: Float32Array; sin: Float32Array } {
  const half = invFreq.length;
  const D = 2 * half;
  const cos = new Float32Array(positions.length * D);
  const sin = new Float32Array(positions.length * D);
  for (let n = 0; n < positions.length; n++) {
    const p = positions[n]!;
    for (let i = 0; i < half; i++) {
      const angle = p * invFreq[i]!;
      const [c, s] = [Math.cos(angle) * scale, Math.sin(angle) * scale];
      const [j, k] = interleaved ? [2 * i, 2 * i + 1] : [i, half + i];
      cos[n * D + j] = cos[n * D + k] = c;
      sin[n * D + j] = sin[n * D + k] = s;
    }
  }
  return { cos, sin };
}

/**
 * x [B, H, T, D] rotated: x * cos + rotate_half(x) * sin, rotate_half(x) =
 * cat(-x2, x1), over its leading R dims (cos, sin [.., T, R]); the rest pass.
 * `interleaved` (GLM): rotate_half of each pair (x0, x1) is (-x1, x0).
 */
export function applyRotary(
  x: tf.Tensor4D,
  cos: tf.Tensor4D,
  sin: tf.Tensor4D,
  interleaved = false,
): tf.Tensor4D {
  // cpu and wasm: one fused kernel, the same bits (core's ops/rotary.ts).
  if (!interleaved && cos.shape[3] === x.shape[3] && rotaryFusable(x, cos)) {
    return rotary(x, cos, sin);
  }
  return tf.tidy(() => {
    const [D, R] = [x.shape[3], cos.shape[3]];
    const [rot, pass] = R === D ? [x, null] : tf.split(x, [R, D - R], 3);
    const rotated = interleaved ? rotatePairs(rot!) : rotateHalf(rot!);
    // Products that keep the tables, not x (core's shape-only ops).
    const y = addSame(mulConstant(rot!, cos), mulConstant(rotated, sin)) as tf.Tensor4D;
    return pass === null ? y : (tf.concat([y, pass], 3) as tf.Tensor4D);
  });
}

/** cat(-x2, x1) of the halves of the last axis. */
function rotateHalf(x: tf.Tensor): tf.Tensor {
  const [x1, x2] = tf.split(x, 2, -1);
  return tf.concat([tf.neg(x2!), x1!], -1);
}

/** (-x1, x0) of each adjacent pair of the last axis. */
function rotatePairs(x: tf.Tensor): tf.Tensor {
  const pairs = x.reshape([-1, 2]); // [..., 2]: rank 2 keeps tfjs's gradients simple
  const [even, odd] = tf.split(pairs, 2, 1);
  return tf.concat([tf.neg(odd!), even!], 1).reshape(x.shape);
}
