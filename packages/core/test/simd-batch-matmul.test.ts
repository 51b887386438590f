// The SIMD batched matmul (assembly/batch-matmul.ts, run by
// src/backend/simd/batch-matmul.ts) against the cpu backend: every transpose
// combination, batch 1 and > 1, broadcast batches, odd and even shapes and
// shapes that the 4 x 8 register tile does not divide.
//
// Tolerance: the textbook forward-error bound of a float32 dot product of
// length k, |fl(x.y) - x.y| <= gamma_k sum |x_i y_i| with gamma_k = k u / (1 - k u),
// u = 2^-24. Both backends are within it of the exact product, so they differ
// by at most 2 gamma_k (|A| |B|) element by element (|A| |B| is computed on cpu).
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { batchedProduct, simdBatchMatMul } from '../src/backend/simd/batch-matmul.js';
import { simdKernels } from '../src/backend/simd/instance.js';
import { tf } from '../src/backend/tf.js';
import { prefersXnnpack } from '../src/backend/wasm-matmul.js';
import { Rng } from '../src/random.js';

async function use(name: 'cpu' | 'wasm'): Promise<void> {
  await tf.setBackend(name);
  await tf.ready();
}

function randn(shape: number[], seed: number): Float32Array {
  const rng = new Rng(seed);
  const size = shape.reduce((x, y) => x * y, 1);
  return Float32Array.from({ length: size }, () => rng.normal());
}

interface Case {
  a: number[];
  b: number[];
  ta: boolean;
  tb: boolean;
}

function label({ a, b, ta, tb }: Case): string {
  return `[${a}]${ta ? '^T' : ''} x [${b}]${tb ? '^T' : ''}`;
}

/** Shapes of op(A) [batch.., m, k] and op(B) [batch.., k, n], stored as the flags say. */
function stored(batchA: number[], batchB: number[], m: number, n: number, k: number): Case[] {
  const out: Case[] = [];
  for (const ta of [false, true]) {
    for (const tb of [false, true]) {
      out.push({
        a: [...batchA, ...(ta ? [k, m] : [m, k])],
        b: [...batchB, ...(tb ? [n, k] : [k, n])],
        ta,
        tb,
      });
    }
  }
  return out;
}

/** The cpu product and its error bound 2 gamma_k (|A| |B|). */
async function cpuReference(
  c: Case,
  k: number,
): Promise<{ want: Float32Array; bound: Float32Array }> {
  await use('cpu');
  return tf.tidy(() => {
    const a = tf.tensor(randn(c.a, 1), c.a);
    const b = tf.tensor(randn(c.b, 2), c.b);
    const want = tf.matMul(a, b, c.ta, c.tb).dataSync() as Float32Array;
    const u = 2 ** -24;
    const gamma = (k * u) / (1 - k * u);
    const abs = tf.matMul(tf.abs(a), tf.abs(b), c.ta, c.tb);
    const bound = tf.mul(abs, 2 * gamma).dataSync() as Float32Array;
    return { want, bound };
  });
}

function expectWithin(got: Float32Array, want: Float32Array, bound: Float32Array): void {
  expect(got.length).toBe(want.length);
  let worst = -Infinity;
  for (let i = 0; i < want.length; i++) {
    // A tiny absolute floor: a bound of 0 (a row of zeros) still allows -0 vs 0.
    worst = Math.max(worst, Math.abs(got[i]! - want[i]!) - bound[i]! - 1e-30);
  }
  expect(worst).toBeLessThanOrEqual(0);
}

/** op(A) op(B) on wasm through the kernel itself. */
async function simdProduct(c: Case): Promise<Float32Array> {
  await use('wasm');
  const backend = tf.backend() as unknown as BackendWasm;
  const aValues = randn(c.a, 1);
  const bValues = randn(c.b, 2);
  return tf.tidy(() => {
    const a = tf.tensor(aValues, c.a);
    const b = tf.tensor(bValues, c.b);
    const info = simdBatchMatMul(a, b, c.ta, c.tb, backend);
    expect(info).toBeDefined();
    const out = tf.engine().makeTensorFromTensorInfo(info!);
    // The kernel reads its inputs and writes only its output.
    expect(Array.from(a.dataSync())).toEqual(Array.from(aValues));
    expect(Array.from(b.dataSync())).toEqual(Array.from(bValues));
    return out.dataSync() as Float32Array;
  });
}

/** op(A) op(B) on wasm through tf.matMul (the registered BatchMatMul). */
async function wasmMatMul(c: Case): Promise<Float32Array> {
  await use('wasm');
  const before = tf.memory().numTensors;
  const values = tf.tidy(() => {
    const a = tf.tensor(randn(c.a, 1), c.a);
    const b = tf.tensor(randn(c.b, 2), c.b);
    return tf.matMul(a, b, c.ta, c.tb).dataSync() as Float32Array;
  });
  expect(tf.memory().numTensors).toBe(before);
  return values;
}

describe('SIMD batched matmul kernel', () => {
  beforeAll(async () => {
    await use('wasm');
  });

  it('loads over the wasm backend heap', () => {
    expect(simdKernels(tf.backend() as unknown as BackendWasm)).toBeDefined();
  });

  // [m, n, k]: below, at and across the 4 x 8 tile and the 2-step k unroll.
  const sizes: [number, number, number][] = [
    [1, 1, 1],
    [3, 5, 7],
    [4, 8, 2],
    [5, 9, 3],
    [8, 16, 16],
    [13, 17, 31],
    [33, 7, 64],
  ];
  for (const [m, n, k] of sizes) {
    for (const [batchA, batchB] of [
      [[1], [1]],
      [[3], [3]],
    ]) {
      for (const c of stored(batchA!, batchB!, m, n, k)) {
        it(`${label(c)} equals cpu`, async () => {
          const { want, bound } = await cpuReference(c, k);
          expectWithin(await simdProduct(c), want, bound);
        });
      }
    }
  }

  // Broadcast batches: one matrix against a batch, in either operand, any rank.
  const broadcast: [number[], number[]][] = [
    [[1], [3]],
    [[4], []],
    [[], [2, 3]],
    [
      [2, 3],
      [2, 3],
    ],
  ];
  for (const [batchA, batchB] of broadcast) {
    for (const c of stored(batchA, batchB, 6, 11, 5)) {
      it(`broadcast ${label(c)} equals cpu`, async () => {
        const { want, bound } = await cpuReference(c, 5);
        expectWithin(await simdProduct(c), want, bound);
      });
    }
  }
});

describe('wasm BatchMatMul routes float32 products to the SIMD kernel', () => {
  it('takes float32 products of any batch, leaves the rest to tfjs', () => {
    const f = (shape: number[]) => ({ shape, dtype: 'float32' as const });
    expect(batchedProduct(f([32, 128, 64]), f([32, 128, 64]), false, true)).toEqual({
      outShape: [32, 128, 128],
      batch: 32,
      m: 128,
      n: 128,
      k: 64,
      aBatchStride: 128 * 64,
      bBatchStride: 128 * 64,
    });
    expect(batchedProduct(f([2, 4, 5, 6]), f([6, 3]), false, false)?.bBatchStride).toBe(0);
    expect(batchedProduct(f([1, 5, 6]), f([1, 6, 3]), false, false)?.batch).toBe(1);
    expect(batchedProduct(f([5, 6]), f([3, 6]), false, true)).toMatchObject({ m: 5, n: 3, k: 6 });
    expect(batchedProduct(f([2, 1, 5, 6]), f([1, 3, 6, 3]), false, false)).toBeUndefined();
    expect(batchedProduct(f([2, 5, 6]), f([2, 7, 3]), false, false)).toBeUndefined();
    expect(batchedProduct(f([2, 0, 6]), f([2, 6, 3]), false, false)).toBeUndefined();
    const ints = { shape: [2, 5, 6], dtype: 'int32' as const };
    expect(batchedProduct(ints, ints, false, true)).toBeUndefined();
  });

  it('leaves plain 2-D products of under 64 rows to XNNPACK, and nothing else', () => {
    expect(prefersXnnpack([1, 256], false, false)).toBe(true); // generation, one prompt
    expect(prefersXnnpack([63, 256], false, false)).toBe(true);
    expect(prefersXnnpack([64, 256], false, false)).toBe(false);
    expect(prefersXnnpack([1024, 256], false, false)).toBe(false); // a training step's rows
    expect(prefersXnnpack([1, 256], false, true)).toBe(false); // a flag: no explicit transpose
    expect(prefersXnnpack([8, 1024], true, false)).toBe(false);
    expect(prefersXnnpack([2, 1, 256], false, false)).toBe(false); // batched
  });

  // Attention-like [B*H, T, D] products, rank 4 as the models issue them.
  for (const c of stored([2, 3], [2, 3], 19, 21, 16)) {
    it(`tf.matMul ${label(c)} equals cpu`, async () => {
      const { want, bound } = await cpuReference(c, 16);
      expectWithin(await wasmMatMul(c), want, bound);
    });
  }

  it('gradients of a causal attention (QK^T, softmax, PV) match cpu', async () => {
    const [B, H, T, D] = [2, 3, 13, 8];
    const run = async (backend: 'cpu' | 'wasm') => {
      await use(backend);
      return tf.tidy(() => {
        const q = tf.tensor(randn([B, H, T, D], 3), [B, H, T, D]);
        const k = tf.tensor(randn([B, H, T, D], 4), [B, H, T, D]);
        const v = tf.tensor(randn([B, H, T, D], 5), [B, H, T, D]);
        const w = tf.tensor(randn([B, H, T, D], 6), [B, H, T, D]);
        const mask = tf.linalg
          .bandPart(tf.ones([T, T]), -1, 0)
          .sub(1)
          .mul(1e9); // [T, T]
        const f = (x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) => {
          const scores = tf.add(tf.matMul(x, y, false, true), mask); // [B, H, T, T]
          return tf.sum(tf.mul(tf.matMul(tf.softmax(scores), z), w)); // PV: [B, H, T, D]
        };
        return tf
          .grads(f)([q, k, v])
          .map((g) => g.dataSync() as Float32Array);
      });
    };
    const want = await run('cpu');
    const got = await run('wasm');
    want.forEach((w, i) => {
      let worst = 0;
      for (let j = 0; j < w.length; j++) worst = Math.max(worst, Math.abs(got[i]![j]! - w[j]!));
      expect(worst).toBeLessThan(1e-4);
    });
  });
});
