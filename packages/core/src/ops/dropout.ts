// Dropout with masks from a counter-based hash: element i of a tensor is
// kept iff hash(key, i) >= rate * 2^32, and kept values are scaled by
// 1 / (1 - rate). The mask is a pure function of (seed, i), so
//   - every backend draws the same mask (webgpu computes it in the kernel,
//     cpu and wasm in one JavaScript loop), bit for bit;
//   - no mask is stored: backward draws it again (dx = dropout(dy), same seed);
//   - the same seed on any worker gives the same mask (N workers == 1 worker).
// The hash is lowbias32 (Chris Wellons' integer hash), keyed twice so that two
// seeds' masks are not a fixed permutation of each other.
import { tf } from '../backend/tf.js';
import { DROPOUT, fusedDropoutAvailable } from '../backend/webgpu-kernels/dropout.js';
import { lowbias32 } from '../random.js';

/** What the mask of (seed, rate) is made of: two u32 keys, the u32 threshold, the f32 scale. */
export interface DropoutKeys {
  k1: number;
  k2: number;
  threshold: number;
  scale: number;
}

/** The keys of an integer seed (any magnitude up to 2^53, negative too). */
export function dropoutKeys(seed: number, rate: number): DropoutKeys {
  if (!(rate >= 0 && rate < 1)) throw new Error(`dropout: rate must be in [0, 1), got ${rate}`);
  if (!Number.isSafeInteger(seed)) throw new Error(`dropout: seed must be an integer, got ${seed}`);
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 2 ** 32) >>> 0;
  const k1 = lowbias32(lo ^ lowbias32(hi ^ 0x9e3779b9));
  return {
    k1,
    k2: lowbias32(k1 ^ 0x85ebca6b),
    threshold: Math.min(2 ** 32 - 1, Math.round(rate * 2 ** 32)),
    scale: Math.fround(1 / (1 - rate)),
  };
}

/** Whether element i is kept: hash(hash(i ^ k1) ^ k2) >= threshold. */
export function dropoutKeeps(keys: DropoutKeys, i: number): boolean {
  return lowbias32(lowbias32(i ^ keys.k1) ^ keys.k2) >= keys.threshold;
}

/** The multiplier of each of `size` elements: scale where kept, 0 where dropped. */
export function dropoutMask(size: number, keys: DropoutKeys): Float32Array {
  const mask = new Float32Array(size);
  for (let i = 0; i < size; i++) mask[i] = dropoutKeeps(keys, i) ? keys.scale : 0;
  return mask;
}

/**
 * Inverted dropout of `x` with the mask of `seed` (elements indexed in
 * row-major order): x * keep / (1 - rate). No seed: a random one, as
 * tf.dropout without a seed. Differentiable: dx = the same mask times dy
 * (webgpu draws it again in the kernel; cpu and wasm keep the mask they drew,
 * as drawing costs more than keeping).
 */
export function seededDropout(x: tf.Tensor, rate: number, seed?: number): tf.Tensor {
  if (rate === 0) return x;
  const keys = dropoutKeys(seed ?? Math.floor(Math.random() * 2 ** 32), rate);
  if (tf.getBackend() === 'webgpu' && fusedDropoutAvailable()) {
    const kernel = (t: tf.Tensor) =>
      tf.engine().runKernel(DROPOUT, { x: t }, { ...keys } as never) as tf.Tensor;
    const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
      value: kernel(args[0] as tf.Tensor),
      gradFunc: (dy: tf.Tensor) => kernel(dy),
    }));
    return op(x);
  }
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    const mask = tf.tensor(dropoutMask(input.size, keys), input.shape, 'float32');
    // Kept for backward (freed by it; like any saved tensor, kept if no gradient ever runs:
    // training passes always take one).
    (args[1] as tf.GradSaveFunc)([mask]);
    return {
      value: tf.mul(input, mask),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.mul(dy, saved[0]!),
    };
  });
  return op(x);
}
