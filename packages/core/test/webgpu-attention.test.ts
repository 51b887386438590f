// Fused causal attention (src/backend/webgpu-kernels/attention.ts, through
// core's causalAttention op) executed on webgpu (SwiftShader where there is
// no GPU): the output and the gradients of q, k and v against tfjs's
// composed softmax(q k^T + mask) v on webgpu and on the cpu backend, for odd
// and even lengths, one token, several heads and head sizes; no [T, T]
// tensor is ever made (memory linear in T).
import { describe, expect, it } from 'vitest';
import {
  type BackendName,
  ATTN_GRAD,
  ATTN_STATS,
  causalAttention,
  causalAttentionComposed,
  fusedAttentionAvailable,
  tf,
  useBackend,
  useFusedAttention,
} from '../src/index.js';
import { webGpuSuite } from './webgpu-suite.js';
import { maxDiff, values } from './attention-values.js';

/** [T, T]: 0 where key j <= query i (and i - j < window), -1e9 elsewhere (the model families' mask). */
function causalMask(T: number, window: number | null = null): tf.Tensor2D {
  const mask = new Float32Array(T * T);
  for (let i = 0; i < T; i++)
    for (let j = 0; j < T; j++)
      if (j > i || (window !== null && i - j >= window)) mask[i * T + j] = -1e9;
  return tf.tensor2d(mask, [T, T]);
}

interface Outcome {
  y: Float32Array;
  grads: Float32Array[];
  kernels: string[];
  /** Largest tensor (elements) made while computing y and the gradients. */
  largest: number;
}

/** y = attention(q, k, v), and d sum(y * probe) / d q, k, v. */
async function run(
  backend: BackendName,
  fused: boolean,
  shape: number[],
  dropout?: { rate: number; seed: number },
  window: number | null = null,
  softcap: number | null = null,
): Promise<Outcome> {
  await useBackend(backend);
  if (backend === 'webgpu') tf.env().set('WEBGPU_CPU_FORWARD', false);
  useFusedAttention(fused);
  try {
    const size = shape.reduce((a, b) => a * b, 1);
    const T = shape[shape.length - 2]!;
    const D = shape[shape.length - 1]!;
    const [q, k, v] = [1, 2, 3].map((i) => tf.tensor(values(size, size + i, 1.5), shape));
    const probe = tf.tensor(values(size, 7, 1), shape);
    const mask = causalMask(T, window);
    if (backend === 'webgpu') expect(fusedAttentionAvailable()).toBe(fused);
    const options = { scale: 1 / Math.sqrt(D), mask, dropout, window, softcap };
    const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
      (fused ? causalAttention : causalAttentionComposed)(a, b, c, options);
    let y!: tf.Tensor;
    let grads!: tf.Tensor[];
    const profile = await tf.profile(() => {
      y = tf.keep(f(q!, k!, v!));
      grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
        tf.sum(tf.mul(f(a, b, c), probe)),
      )([q!, k!, v!]);
      return [];
    });
    const largest = Math.max(
      ...profile.kernels.map((kk) =>
        Math.max(...kk.outputShapes.map((s) => s.reduce((a, b) => a * b, 1))),
      ),
    );
    const out = {
      y: (await y.data()) as Float32Array,
      grads: await Promise.all(grads.map(async (g) => (await g.data()) as Float32Array)),
      kernels: profile.kernelNames,
      largest,
    };
    tf.dispose([q!, k!, v!, probe, mask, y, ...grads]);
    return out;
  } finally {
    useFusedAttention(true);
  }
}

describe('fused causal attention on webgpu equals the composed ops and cpu', () => {
  webGpuSuite();

  // [batch, heads, T, D]: one token, odd T, T over a workgroup (64 rows) and
  // over several tiles of keys (GPT-2's D = 64: 32 keys per tile; D = 128:
  // 16), D of GPT-2's tiny and Llama's shapes, and a D not a multiple of 4
  // (scalar loads).
  const shapes = [
    [1, 1, 1, 8],
    [2, 3, 13, 8],
    [1, 2, 70, 16],
    [2, 1, 33, 32],
    [1, 2, 130, 64],
    [1, 1, 37, 128],
    [2, 1, 9, 6],
  ];
  for (const shape of shapes) {
    it(`[${shape}]: y, dq, dk, dv`, async () => {
      const fused = await run('webgpu', true, shape);
      expect(fused.kernels).toContain(ATTN_STATS);
      expect(fused.kernels).toContain(ATTN_GRAD);
      const composed = await run('webgpu', false, shape);
      expect(composed.kernels).not.toContain(ATTN_STATS);
      const cpu = await run('cpu', false, shape);
      for (const peer of [composed, cpu]) {
        expect(maxDiff(fused.y, peer.y)).toBeLessThan(1e-5);
        for (const [i, g] of fused.grads.entries())
          expect(maxDiff(g, peer.grads[i]!), `gradient ${'qkv'[i]}`).toBeLessThan(1e-5);
      }
    }, 120_000);
  }

  it('makes no [T, T] tensor: its largest tensor grows linearly in T', async () => {
    const at = async (T: number) => (await run('webgpu', true, [1, 2, T, 8])).largest;
    const [small, large] = [await at(32), await at(128)];
    expect(large).toBe(4 * small); // [.., T, D] at both lengths
    const composed = (await run('webgpu', false, [1, 2, 128, 8])).largest;
    expect(composed).toBe(2 * 128 * 128); // the composed path's scores
  }, 120_000);

  // Mistral's sliding window: query i sees keys i - window + 1 .. i. Windows inside one key tile,
  // across tiles and row blocks (T 130, D 64: 32 keys per tile), of one key (itself), with
  // dropout, and as long as T (no effect).
  const windows: [number[], number, boolean][] = [
    [[2, 3, 13, 8], 4, false],
    [[1, 2, 130, 64], 40, false],
    [[1, 2, 70, 16], 1, false],
    [[2, 1, 9, 6], 3, true],
    [[1, 1, 37, 128], 37, false],
  ];
  for (const [shape, window, withDropout] of windows) {
    it(`[${shape}] with a sliding window of ${window}${withDropout ? ' and dropout' : ''}: y, dq, dk, dv`, async () => {
      const dropout = withDropout ? { rate: 0.3, seed: 5 } : undefined;
      const fused = await run('webgpu', true, shape, dropout, window);
      expect(fused.kernels).toContain(ATTN_STATS);
      const composed = await run('webgpu', false, shape, dropout, window);
      const cpu = await run('cpu', false, shape, dropout, window);
      for (const peer of [composed, cpu]) {
        expect(maxDiff(fused.y, peer.y)).toBeLessThan(1e-5);
        for (const [i, g] of fused.grads.entries())
          expect(maxDiff(g, peer.grads[i]!), `gradient ${'qkv'[i]}`).toBeLessThan(1e-5);
      }
      // The window matters (unless it spans T): without it the output differs.
      const unwindowed = await run('webgpu', true, shape, dropout);
      expect(maxDiff(fused.y, unwindowed.y) > 1e-2).toBe(window < shape[2]!);
    }, 240_000);
  }

  // Dropout on the probabilities drawn in the kernels: the mask of seededDropout
  // over the composed path's [.., T, T] probabilities, bit for bit (several
  // heads and batches: the mask's index; several row blocks and key tiles).
  for (const shape of [
    [2, 3, 13, 8],
    [1, 2, 70, 16],
    [1, 2, 130, 64],
    [2, 1, 9, 6],
  ]) {
    it(`[${shape}] with dropout 0.3 on the probabilities: y, dq, dk, dv`, async () => {
      const dropout = { rate: 0.3, seed: 11 };
      const fused = await run('webgpu', true, shape, dropout);
      expect(fused.kernels).toContain(ATTN_STATS);
      expect(fused.largest).toBeLessThan(shape[2]! * shape[2]! * shape[0]! * shape[1]!);
      const composed = await run('webgpu', false, shape, dropout);
      const cpu = await run('cpu', false, shape, dropout);
      for (const peer of [composed, cpu]) {
        expect(maxDiff(fused.y, peer.y)).toBeLessThan(1e-5);
        for (const [i, g] of fused.grads.entries())
          expect(maxDiff(g, peer.grads[i]!), `gradient ${'qkv'[i]}`).toBeLessThan(1e-5);
      }
      // The mask matters: without it (or with another seed) the output differs.
      const plain = await run('webgpu', true, shape);
      const other = await run('webgpu', true, shape, { rate: 0.3, seed: 12 });
      expect(maxDiff(fused.y, plain.y)).toBeGreaterThan(1e-2);
      expect(maxDiff(fused.y, other.y)).toBeGreaterThan(1e-2);
    }, 240_000);
  }

  // Gemma 2's soft-capping, cap tanh(s / cap): scores of about +-3 here, so a cap of 1.5 bends
  // most of them (and saturates some: tanh's clamp), 50 (Gemma 2's) barely; with a window and
  // dropout too (Gemma 2's sliding layers).
  const capped: [number[], number, number | null, boolean][] = [
    [[2, 3, 13, 8], 1.5, null, false],
    [[1, 2, 130, 64], 1.5, 40, false],
    [[2, 1, 33, 32], 50, null, false],
    [[2, 1, 9, 6], 1.5, 3, true],
  ];
  for (const [shape, cap, window, withDropout] of capped) {
    it(`[${shape}] soft-capped at ${cap}${window ? `, window ${window}` : ''}${withDropout ? ', dropout' : ''}: y, dq, dk, dv`, async () => {
      const dropout = withDropout ? { rate: 0.3, seed: 5 } : undefined;
      const fused = await run('webgpu', true, shape, dropout, window, cap);
      expect(fused.kernels).toContain(ATTN_STATS);
      expect(fused.largest).toBeLessThan(shape[2]! * shape[2]! * shape[0]! * shape[1]!);
      const composed = await run('webgpu', false, shape, dropout, window, cap);
      const cpu = await run('cpu', false, shape, dropout, window, cap);
      for (const peer of [composed, cpu]) {
        expect(maxDiff(fused.y, peer.y)).toBeLessThan(1e-5);
        for (const [i, g] of fused.grads.entries())
          expect(maxDiff(g, peer.grads[i]!), `gradient ${'qkv'[i]}`).toBeLessThan(1e-5);
      }
      // The cap matters: without it the output and the gradients differ.
      const uncapped = await run('webgpu', true, shape, dropout, window);
      const change = Math.max(
        maxDiff(fused.y, uncapped.y),
        maxDiff(fused.grads[0]!, uncapped.grads[0]!),
      );
      expect(change).toBeGreaterThan(cap < 10 ? 1e-2 : 1e-4);
    }, 240_000);
  }
});
