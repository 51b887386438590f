// Fused causal attention over packed documents (the kernels' `spans` input,
// src/backend/webgpu-kernels/attention.ts) executed on webgpu (SwiftShader
// where there is no GPU): y, dq, dk and dv against tfjs's composed
// softmax(q k^T + mask) v on the cpu backend with the block-diagonal causal
// mask, for documents of one token, documents that cross a workgroup's 64
// rows and a tile of keys, batch items packed differently, sliding windows
// and soft caps.
import { describe, expect, it } from 'vitest';
import {
  ATTN_DELTA,
  ATTN_GRAD,
  ATTN_OUT,
  ATTN_STATS,
  causalAttentionComposed,
  tf,
  useBackend,
} from '../src/index.js';
import { webGpuSuite } from './webgpu-suite.js';
import { maxDiff, values } from './attention-values.js';

/** Each token's (first, last) token of its document, [B*T, 2] flat, from each item's document lengths. */
function spansOf(lengths: number[][]): Int32Array {
  const spans: number[] = [];
  for (const item of lengths) {
    let first = 0;
    for (const length of item) {
      for (let t = 0; t < length; t++) spans.push(first, first + length - 1);
      first += length;
    }
  }
  return Int32Array.from(spans);
}

/** [B, 1, T, T]: 0 where query i may see key j (same document, j <= i, i - j < window), -1e9 elsewhere. */
function documentMask(spans: Int32Array, B: number, T: number, window: number | null) {
  const mask = new Float32Array(B * T * T);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < T; i++)
      for (let j = 0; j < T; j++) {
        const first = spans[2 * (b * T + i)]!;
        const seen = j <= i && j >= first && (window === null || i - j < window);
        if (!seen) mask[(b * T + i) * T + j] = -1e9;
      }
  return tf.tensor4d(mask, [B, 1, T, T]);
}

interface Case {
  shape: [number, number, number, number]; // [B, H, T, D]
  lengths: number[][]; // each batch item's documents
  window: number | null;
  softcap: number | null;
}

/** y and d sum(y * probe) / d q, k, v, as flat arrays. */
type Outcome = Float32Array[];

async function tensors({ shape }: Case) {
  const [B, H, T, D] = shape;
  const size = B * H * T * D;
  const [q, k, v, probe] = [1, 2, 3, 7].map((i) =>
    tf.tensor(values(size, size + i, 1.5), [B * H, T, D]),
  );
  return { q: q!, k: k!, v: v!, probe: probe! };
}

/** The four fused kernels, run by hand with the spans (what a hand-scheduled plan records). */
async function fused(c: Case, withSpans = true): Promise<Outcome> {
  await useBackend('webgpu');
  const [B, , T, D] = c.shape;
  const { q, k, v, probe } = await tensors(c);
  const spans = tf.tensor2d(spansOf(c.lengths), [B * T, 2], 'int32');
  const documents: Record<string, tf.Tensor> = withSpans ? { spans } : {};
  const attrs = { scale: 1 / Math.sqrt(D), window: c.window ?? 0, softcap: c.softcap ?? 0 };
  const run = (name: string, inputs: Record<string, tf.Tensor>, extra = {}) =>
    tf.engine().runKernel(name, inputs, { ...attrs, ...extra }) as tf.Tensor;
  const lse = run(ATTN_STATS, { q, k, ...documents });
  const y = run(ATTN_OUT, { q, k, v, lse, ...documents });
  const delta = run(ATTN_DELTA, { dy: probe, o: y });
  const inputs = { q, k, v, dy: probe, lse, delta, ...documents };
  const grads = (['q', 'k', 'v'] as const).map((wrt) => run(ATTN_GRAD, inputs, { wrt }));
  const out = await Promise.all([y, ...grads].map(async (t) => (await t.data()) as Float32Array));
  tf.dispose([q, k, v, probe, spans, lse, y, delta, ...grads]);
  return out;
}

/** The composed ops on cpu with the documents' mask. */
async function composed(c: Case): Promise<Outcome> {
  await useBackend('cpu');
  const [B, H, T, D] = c.shape;
  const { q, k, v, probe } = await tensors(c);
  const mask = documentMask(spansOf(c.lengths), B, T, c.window);
  const options = { scale: 1 / Math.sqrt(D), mask, softcap: c.softcap };
  const f = (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) =>
    causalAttentionComposed(
      a.reshape([B, H, T, D]),
      b.reshape([B, H, T, D]),
      d.reshape([B, H, T, D]),
      options,
    ).reshape([B * H, T, D]);
  const y = f(q, k, v);
  const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) =>
    tf.sum(tf.mul(f(a, b, d), probe)),
  )([q, k, v]);
  const out = await Promise.all([y, ...grads].map(async (t) => (await t.data()) as Float32Array));
  tf.dispose([q, k, v, probe, mask, y, ...grads]);
  return out;
}

describe('fused attention over packed documents equals the composed ops with their mask', () => {
  webGpuSuite();

  // T 130 and D 64: two row blocks of 64 and tiles of 32 keys, a document across both;
  // D 6: scalar loads; one-token documents; items packed differently.
  const cases: [string, Case][] = [
    [
      '3 heads, items of 3 and 1 documents',
      { shape: [2, 3, 13, 8], lengths: [[4, 1, 8], [13]], window: null, softcap: null },
    ],
    [
      'documents across row blocks and key tiles, window 40',
      { shape: [1, 2, 130, 64], lengths: [[70, 1, 59]], window: 40, softcap: null },
    ],
    [
      'one-token documents, soft-capped at 1.5',
      {
        shape: [2, 2, 70, 16],
        lengths: [
          [1, 1, 68],
          [30, 40],
        ],
        window: null,
        softcap: 1.5,
      },
    ],
    [
      'head size 6, window 2',
      { shape: [1, 1, 9, 6], lengths: [[3, 3, 3]], window: 2, softcap: null },
    ],
  ];
  it.each(cases)(
    '%s: y, dq, dk, dv',
    async (_name, c) => {
      const got = await fused(c);
      const want = await composed(c);
      for (const [i, name] of ['y', 'dq', 'dk', 'dv'].entries())
        expect(maxDiff(got[i]!, want[i]!), name).toBeLessThan(1e-5);
      // The documents matter: over whole rows the output differs.
      const rows = await fused(c, false);
      expect(maxDiff(rows[0]!, got[0]!)).toBeGreaterThan(1e-2);
    },
    240_000,
  );

  it('refuses spans that do not cover whole rows', async () => {
    await useBackend('webgpu');
    const [q, k] = [0, 1].map(() => tf.zeros([4, 5, 8]));
    const spans = tf.zeros([6, 2], 'int32'); // 6 tokens: not whole rows of 5
    try {
      expect(() =>
        tf.engine().runKernel(ATTN_STATS, { q: q!, k: k!, spans }, { scale: 1 }),
      ).toThrow(/spans \[6, 2\] must cover whole rows of 5 tokens/);
    } finally {
      tf.dispose([q!, k!, spans]);
    }
  });
});
