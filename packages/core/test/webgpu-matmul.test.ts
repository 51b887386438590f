// The project's WGSL matmul (src/backend/webgpu-kernels/) executed for real
// (SwiftShader where there is no GPU), against tfjs-backend-webgpu's stock
// kernel in the same process and the cpu backend: odd and even shapes, shapes
// no tile divides, batch 1 and batched, broadcast batches, every transpose
// combination, every tile of the sweep, and the LoRA epilogue; the
// rank-sized kernels (rank-product.ts) on the LoRA step's rank-sized shapes,
// and the tiled program on every shape they would take.
import { afterEach, describe, expect, it } from 'vitest';
import {
  LORAFLEET_MATMUL,
  Rng,
  STOCK_BATCH_MATMUL,
  TILE_CANDIDATES,
  chooseTile,
  forceMatMulTile,
  forceSplitK,
  rankForm,
  splitCount,
  useRankProducts,
  useSplitK,
  tf,
  tileName,
  useBackend,
} from '../src/index.js';
import { webGpuSuite } from './webgpu-suite.js';

function values(shape: number[], seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal());
}

interface Case {
  aShape: number[];
  bShape: number[];
  transposeA: boolean;
  transposeB: boolean;
}

/** op(A) [.., m, k] op(B) [.., k, n] with the stored shapes the flags imply. */
function makeCase(
  outerA: number[],
  outerB: number[],
  m: number,
  k: number,
  n: number,
  tA: boolean,
  tB: boolean,
): Case {
  return {
    aShape: [...outerA, ...(tA ? [k, m] : [m, k])],
    bShape: [...outerB, ...(tB ? [n, k] : [k, n])],
    transposeA: tA,
    transposeB: tB,
  };
}

const FLAGS = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
] as const;

// (m, k, n): aligned to 4 and to the 64 tile, odd, 1-wide, rank-sized, and
// not divisible by any tile.
const SIZES: [number, number, number][] = [
  [64, 64, 64],
  [37, 21, 45],
  [1, 7, 1],
  [130, 8, 67],
];

async function onCpu(c: Case, sa: Float32Array, sb: Float32Array): Promise<Float32Array> {
  await useBackend('cpu');
  const out = tf.tidy(() =>
    tf.matMul(tf.tensor(sa, c.aShape), tf.tensor(sb, c.bShape), c.transposeA, c.transposeB),
  );
  const data = (await out.data()) as Float32Array;
  out.dispose();
  return data;
}

async function onWebGpu(
  kernel: string,
  c: Case,
  sa: Float32Array,
  sb: Float32Array,
  attrs: Record<string, number | boolean> = {},
) {
  const a = tf.tensor(sa, c.aShape);
  const b = tf.tensor(sb, c.bShape);
  const out = tf.engine().runKernel(kernel, { a, b }, {
    transposeA: c.transposeA,
    transposeB: c.transposeB,
    ...attrs,
  } as never) as tf.Tensor;
  const result = { shape: out.shape, data: (await out.data()) as Float32Array };
  tf.dispose([a, b, out]);
  return result;
}

function maxDiff(x: Float32Array, y: Float32Array): number {
  expect(x.length).toBe(y.length);
  let worst = 0;
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  return worst;
}

/** max |x - y| / (1 + |y|). */
function relativeDiff(x: Float32Array, y: Float32Array): number {
  expect(x.length).toBe(y.length);
  let worst = 0;
  for (let i = 0; i < x.length; i++) {
    worst = Math.max(worst, Math.abs(x[i]! - y[i]!) / (1 + Math.abs(y[i]!)));
  }
  return worst;
}

/** Runs a case three ways: the project's kernel must equal stock and cpu (stock: unless `stock` is false). */
async function check(c: Case, seed: number, stock = true): Promise<void> {
  const sa = values(c.aShape, seed);
  const sb = values(c.bShape, seed + 1);
  const cpu = await onCpu(c, sa, sb);
  await useBackend('webgpu');
  tf.env().set('WEBGPU_CPU_FORWARD', false);
  const ours = await onWebGpu('BatchMatMul', c, sa, sb);
  const what = JSON.stringify(c);
  expect(maxDiff(ours.data, cpu), what).toBeLessThan(1e-4);
  if (takesRankKernel(c)) {
    // The tiled program on the same shape (it takes over where the rank-sized kernels are off).
    useRankProducts(false);
    const tiled = await onWebGpu('BatchMatMul', c, sa, sb).finally(() => useRankProducts(true));
    expect(maxDiff(tiled.data, cpu), `tiled ${what}`).toBeLessThan(1e-4);
  }
  if (!stock) return;
  const theirs = await onWebGpu(STOCK_BATCH_MATMUL, c, sa, sb);
  expect(ours.shape, what).toEqual(theirs.shape);
  expect(maxDiff(ours.data, theirs.data), what).toBeLessThan(1e-4);
}

/** Whether a case goes to a rank-sized kernel (rank-product.ts) when they are on. */
function takesRankKernel(c: Case): boolean {
  const [m, k] = c.transposeA ? c.aShape.slice(-2).reverse() : c.aShape.slice(-2);
  const n = c.transposeB ? c.bShape[c.bShape.length - 2]! : c.bShape[c.bShape.length - 1]!;
  const batch = Math.max(
    ...[c.aShape, c.bShape].map((s) => s.slice(0, -2).reduce((a, b) => a * b, 1)),
  );
  return rankForm({ m: m!, n, k: k!, batch }, c) !== null;
}

/** Shader keys of the pipelines the webgpu backend has compiled (tfjs's cache). */
function compiledKeys(): string[] {
  return Object.keys((tf.backend() as unknown as { pipelineCache: object }).pipelineCache);
}

webGpuSuite(() => forceMatMulTile(null));
afterEach(() => useRankProducts(true));

/**
 * alpha * x op(W) + bias + beta * H op(L) (+ a residual R [M, N]) of
 * LoraFleetMatMul against tfjs's ops, both orientations of L, with and
 * without R.
 */
async function checkEpilogue(m: number, k: number, n: number, r: number) {
  for (const [transposeL, withResidual] of [
    [true, false],
    [false, false],
    [true, true],
    [false, true],
  ]) {
    const x = tf.tensor(values([m, k], 60), [m, k]);
    const w = tf.tensor(values([n, k], 61), [n, k]);
    const bias = tf.tensor(values([n], 62), [n]);
    const h = tf.tensor(values([m, r], 63), [m, r]);
    const l = tf.tensor(values(transposeL ? [n, r] : [r, n], 64), transposeL ? [n, r] : [r, n]);
    const residual = tf.tensor(values([m, n], 65), [m, n]);
    const attrs = { transposeA: false, transposeB: true, alpha: 0.5, beta: 2, transposeL };
    const inputs = { a: x, b: w, bias, h, l, ...(withResidual ? { r: residual } : {}) };
    const fused = tf.engine().runKernel(LORAFLEET_MATMUL, inputs, attrs as never) as tf.Tensor;
    const reference = tf.tidy(() => {
      const y = tf.add(
        tf.add(tf.mul(tf.matMul(x, w, false, true), 0.5), bias),
        tf.mul(tf.matMul(h, l, false, transposeL), 2),
      );
      return withResidual ? tf.add(y, residual) : y;
    });
    const [got, want] = [
      (await fused.data()) as Float32Array,
      (await reference.data()) as Float32Array,
    ];
    expect(maxDiff(got, want)).toBeLessThan(1e-4);
    expect(maxDiff(want, new Float32Array(want.length))).toBeGreaterThan(1); // not vacuous
    tf.dispose([x, w, bias, h, l, residual, fused, reference]);
  }
}

describe('WGSL matmul on webgpu equals tfjs stock and cpu', () => {
  it('BatchMatMul on webgpu is the project kernel', () => {
    expect(tf.getKernel('BatchMatMul', 'webgpu')!.kernelFunc).not.toBe(
      tf.getKernel(STOCK_BATCH_MATMUL, 'webgpu')!.kernelFunc,
    );
  });

  for (const [tA, tB] of FLAGS) {
    it(`2-D, transposeA=${tA} transposeB=${tB}, odd/even/untiled sizes`, async () => {
      let seed = 1;
      for (const [m, k, n] of SIZES) await check(makeCase([], [], m, k, n, tA, tB), (seed += 2));
    }, 300_000);

    it(`batched and broadcast, transposeA=${tA} transposeB=${tB}`, async () => {
      await check(makeCase([2, 3], [2, 3], 10, 8, 6, tA, tB), 42);
      await check(makeCase([4], [], 19, 12, 7, tA, tB), 43);
      await check(makeCase([1], [2, 2], 7, 5, 13, tA, tB), 44);
    }, 300_000);
  }

  it('split-k: the rank-sized A^T B of the LoRA backward (dA, dB) equals cpu and stock, split or not', async () => {
    useRankProducts(false); // the tiled program's split-k (the rank-sized kernels take these shapes)
    // (m, k, n): dA = dh^T x and dB = dy^T h shapes; k a power of 2, k even, k odd (the last
    // chunk shorter); each chunk keeps at least 256 of k.
    const shapes: [number, number, number, number][] = [
      [8, 1024, 96, 4],
      [96, 1000, 8, 2],
      [8, 1023, 96, 2],
    ];
    for (const [m, k, n, splits] of shapes) {
      const p = { m, n, k, batch: 1, transposeA: true, transposeB: false };
      expect(splitCount(p, chooseTile(m, n, k, 1)), JSON.stringify(p)).toBe(splits);
      expect(splitCount({ ...p, transposeA: false }, chooseTile(m, n, k, 1))).toBe(1);
      const c = makeCase([], [], m, k, n, true, false);
      const [sa, sb] = [values(c.aShape, k), values(c.bShape, k + 1)];
      const cpu = await onCpu(c, sa, sb);
      await useBackend('webgpu');
      tf.env().set('WEBGPU_CPU_FORWARD', false);
      const split = await onWebGpu('BatchMatMul', c, sa, sb);
      useSplitK(false);
      const whole = await onWebGpu('BatchMatMul', c, sa, sb).finally(() => useSplitK(true));
      const stock = await onWebGpu(STOCK_BATCH_MATMUL, c, sa, sb);
      expect(split.shape).toEqual([m, n]);
      // Sums of ~1000 products of N(0, 1) values (|C| ~ 30): float32 rounding reaches ~1e-5 of
      // 1 + |C|; a lost or doubled chunk would be off by ~10.
      for (const peer of [cpu, whole.data, stock.data]) {
        expect(relativeDiff(split.data, peer), JSON.stringify(p)).toBeLessThan(3e-5);
      }
      // The LoRA backward's plain products (LoraFleetMatMul without bias or epilogue, alpha = s) split too.
      const lora = { alpha: 0.5, beta: 0, transposeL: false };
      const scaled = await onWebGpu(LORAFLEET_MATMUL, c, sa, sb, lora);
      const half = cpu.map((v) => 0.5 * v);
      expect(relativeDiff(scaled.data, half), `LoraFleetMatMul ${JSON.stringify(p)}`).toBeLessThan(
        3e-5,
      );
    }
  }, 300_000);

  // Split-k chunks k by workgroup z within the one product: any transposes, vec4 (K = 72) and
  // scalar (K = 45) loads, a last chunk shorter than the others, single- and double-buffered.
  it('split-k on any unbatched product: every transpose, vec4 and scalar loads', async () => {
    const db = TILE_CANDIDATES.find((t) => t.db)!;
    try {
      forceSplitK(3);
      expect(
        splitCount({ m: 20, n: 36, k: 72, batch: 1, transposeA: false, transposeB: true }, db),
      ).toBe(3);
      for (const tile of [null, db]) {
        forceMatMulTile(tile);
        for (const [tA, tB] of FLAGS) {
          for (const k of [72, 45]) await check(makeCase([], [], 20, k, 36, tA, tB), 5 + k, false);
        }
      }
      // LoraFleetMatMul with a bias (a linear layer's forward): the bias joins the partials' sum.
      const [x, w, bias] = [[20, 45], [36, 45], [36]].map((s, i) =>
        tf.tensor(values(s, 90 + i), s),
      ) as [tf.Tensor, tf.Tensor, tf.Tensor];
      const attrs = { transposeA: false, transposeB: true, alpha: 0.5, beta: 0, transposeL: false };
      const inputs = { a: x, b: w, bias };
      const split = tf.engine().runKernel(LORAFLEET_MATMUL, inputs, attrs as never) as tf.Tensor;
      forceSplitK(null);
      const whole = tf.tidy(() => tf.add(tf.mul(tf.matMul(x, w, false, true), 0.5), bias));
      const [got, want] = await Promise.all([split.data(), whole.data()]);
      expect(maxDiff(got as Float32Array, want as Float32Array)).toBeLessThan(1e-4);
      tf.dispose([x, w, bias, split, whole]);
    } finally {
      forceSplitK(null);
      forceMatMulTile(null);
    }
  }, 300_000);

  it('every tile of the sweep gives the product of the cpu backend', async () => {
    try {
      for (const tile of TILE_CANDIDATES) {
        forceMatMulTile(tile);
        await check(makeCase([2], [2], 70, 45, 133, false, true), 50, false);
      }
    } finally {
      forceMatMulTile(null);
    }
    expect(TILE_CANDIDATES.map(tileName)).toContain('64x64_4x4_k16');
  }, 600_000);

  // Every candidate runs once above; the double-buffered loop's load paths (k-major or not,
  // vec4 or scalar, both operands) on one of them here, over one slice and several.
  it('a double-buffered tile: every transpose, vec4 and scalar loads, broadcast', async () => {
    const tile = TILE_CANDIDATES.find((t) => t.db);
    expect(tile).toBeDefined();
    try {
      forceMatMulTile(tile!);
      for (const [tA, tB] of FLAGS) {
        // K = 68: four slices and a part, vec4 loads (M = 20, N = 72 too); 13: scalar, one slice.
        for (const k of [68, 13]) await check(makeCase([2], [1], 20, k, 72, tA, tB), 7 + k, false);
      }
    } finally {
      forceMatMulTile(null);
    }
  }, 300_000);

  it('LoraFleetMatMul: alpha * x op(W) + bias + beta * H op(L) (+ R), both orientations of L', async () => {
    await checkEpilogue(23, 18, 30, 5);
  }, 300_000);

  // Spread tiles place an invocation's columns TN/RN vec4s apart: the bias and
  // the LoRA term must follow them (N = 150: a partial tile, columns past N).
  it('spread tiles: the product, the bias and the LoRA term on their columns', async () => {
    // One single- and one double-buffered (the epilogue is the same code for all sizes).
    const spread = TILE_CANDIDATES.filter((t) => t.spread && t.tm === 64);
    expect(spread.map((t) => Boolean(t.db))).toEqual([false, true]);
    try {
      for (const tile of spread) {
        forceMatMulTile(tile);
        await checkEpilogue(70, 20, 150, 3);
      }
    } finally {
      forceMatMulTile(null);
    }
  }, 300_000);

  // The LoRA step's rank-sized products, scaled down: x A^T and s dy B (rows form: B transposed
  // or not, k over and under the workgroup's 64, k a multiple of 4 (vec4 loads) or not, N of 1,
  // 3, 8 and 16, one row), dA = dh^T x and dB = s dy^T h (columns form: either side small, the
  // large side a multiple of 4 (vec4) or not, k in several chunks and a shorter last one).
  it('rank-sized kernels: x A^T, dy B, dh^T x and dy^T h equal cpu and stock', async () => {
    const shapes: [number, number, number, boolean, boolean, 'rows' | 'columns'][] = [
      [130, 300, 8, false, true, 'rows'],
      [37, 1001, 16, false, false, 'rows'],
      [1, 40, 1, false, true, 'rows'],
      [65, 7, 3, false, false, 'rows'],
      [8, 1024, 96, true, false, 'columns'],
      [200, 1000, 8, true, false, 'columns'],
      [16, 129, 16, true, false, 'columns'],
      [1, 300, 70, true, false, 'columns'],
      [203, 300, 5, true, false, 'columns'],
    ];
    for (const [m, k, n, tA, tB, form] of shapes) {
      const c = makeCase([], [], m, k, n, tA, tB);
      const what = JSON.stringify([m, k, n, tA, tB]);
      expect(rankForm({ m, n, k, batch: 1 }, c), what).toBe(form);
      const [sa, sb] = [values(c.aShape, k), values(c.bShape, k + 1)];
      const cpu = await onCpu(c, sa, sb);
      await useBackend('webgpu');
      tf.env().set('WEBGPU_CPU_FORWARD', false);
      const ours = await onWebGpu('BatchMatMul', c, sa, sb);
      expect(
        compiledKeys().some((key) => key.includes(`lorafleet_rank_${form}`)),
        what,
      ).toBe(true);
      const stock = await onWebGpu(STOCK_BATCH_MATMUL, c, sa, sb);
      expect(ours.shape).toEqual([m, n]);
      // Sums of up to 1000 products of N(0, 1) values (|C| ~ 30), in runs of up to ~1000 terms
      // per invocation: float32 rounding reaches ~5e-5 of 1 + |C|; a lost chunk is off by ~0.1.
      for (const peer of [cpu, stock.data])
        expect(relativeDiff(ours.data, peer), what).toBeLessThan(1e-4);
      // LoraFleetMatMul's plain products (alpha = s) take them too.
      const lora = { alpha: 0.5, beta: 0, transposeL: false };
      const scaled = await onWebGpu(LORAFLEET_MATMUL, c, sa, sb, lora);
      const half = cpu.map((v) => 0.5 * v);
      expect(relativeDiff(scaled.data, half), `LoraFleetMatMul ${what}`).toBeLessThan(1e-4);
    }
    // Not for batched products, a bias, or both operands transposed: the tiled program.
    expect(
      rankForm({ m: 64, n: 8, k: 64, batch: 2 }, { transposeA: false, transposeB: true }),
    ).toBeNull();
    expect(
      rankForm({ m: 8, n: 64, k: 64, batch: 1 }, { transposeA: true, transposeB: true }),
    ).toBeNull();
    expect(
      rankForm({ m: 64, n: 17, k: 64, batch: 1 }, { transposeA: false, transposeB: false }),
    ).toBeNull();
  }, 300_000);

  // The hand-scheduled step's LM head: logits written into rows padded to a multiple of 4 (ldc),
  // and the gradient product reading them as vec4 (lda) with k = the vocabulary; the padding
  // (here NaN) is never read into a sum.
  it('LoraFleetMatMul with row strides: C into padded rows (ldc), A from padded rows (lda)', async () => {
    await useBackend('webgpu');
    tf.env().set('WEBGPU_CPU_FORWARD', false);
    const [m, v, c, width] = [13, 97, 24, 100];
    const head = tf.tensor2d(values([v, c], 70), [v, c]); // [V, C]
    const y = tf.tensor2d(values([m, c], 71), [m, c]);
    const attrs = { transposeA: false, transposeB: true, alpha: 1, beta: 0, transposeL: false };
    const logits = tf.engine().runKernel(LORAFLEET_MATMUL, { a: y, b: head }, {
      ...attrs,
      ldc: width,
    } as never) as tf.Tensor;
    expect(logits.shape).toEqual([m, width]);
    const want = tf.matMul(y, head, false, true);
    const rows = tf.slice(logits, [0, 0], [m, v]);
    expect(
      maxDiff((await rows.data()) as Float32Array, (await want.data()) as Float32Array),
    ).toBeLessThan(1e-4);
    // A [m, width] whose padding is NaN: C = A[:, :v] head, K = v from head.
    const d = values([m, v], 72);
    const padded = new Float32Array(m * width).fill(Number.NaN);
    for (let r = 0; r < m; r++) padded.set(d.subarray(r * v, (r + 1) * v), r * width);
    const [dl, dlPadded] = [tf.tensor2d(d, [m, v]), tf.tensor2d(padded, [m, width])];
    for (const splits of [null, 3]) {
      forceSplitK(splits);
      const got = tf.engine().runKernel(LORAFLEET_MATMUL, { a: dlPadded, b: head }, {
        ...attrs,
        transposeB: false,
        lda: width,
      } as never) as tf.Tensor;
      forceSplitK(null);
      const ref = tf.matMul(dl, head);
      expect(got.shape).toEqual([m, c]);
      expect(
        maxDiff((await got.data()) as Float32Array, (await ref.data()) as Float32Array),
        `splits ${splits}`,
      ).toBeLessThan(1e-4);
      tf.dispose([got, ref]);
    }
    expect(() =>
      tf.engine().runKernel(LORAFLEET_MATMUL, { a: y, b: head }, { ...attrs, ldc: 96 } as never),
    ).toThrow(/ldc 96 is shorter than C's 97 columns/);
    tf.dispose([head, y, logits, want, rows, dl, dlPadded]);
  });

  it('LoraFleetMatMul: a residual on a plain product (no LoRA term, no split) and its shape checked', async () => {
    // dA-like: a long k that a plain product would split; the residual keeps it whole.
    const a = tf.tensor(values([300, 6], 70), [300, 6]);
    const b = tf.tensor(values([300, 10], 71), [300, 10]);
    const r = tf.tensor(values([6, 10], 72), [6, 10]);
    const attrs = { transposeA: true, transposeB: false, alpha: 1, beta: 0, transposeL: false };
    const got = tf.engine().runKernel(LORAFLEET_MATMUL, { a, b, r }, attrs as never) as tf.Tensor;
    const want = tf.tidy(() => tf.add(tf.matMul(a, b, true, false), r));
    expect(
      maxDiff((await got.data()) as Float32Array, (await want.data()) as Float32Array),
    ).toBeLessThan(1e-4);
    const wrong = tf.ones([5, 10]);
    expect(() =>
      tf.engine().runKernel(LORAFLEET_MATMUL, { a, b, r: wrong }, attrs as never),
    ).toThrow(/the residual r must be \[6, 10\] of an unbatched product/);
    tf.dispose([a, b, r, got, want, wrong]);
  });

  it('LoraFleetMatMul rejects a bias of the wrong size, saying which', () => {
    const x = tf.ones([4, 3]);
    const w = tf.ones([3, 5]);
    const bias = tf.ones([4]);
    const attrs = { transposeA: false, transposeB: false, alpha: 1, beta: 0, transposeL: false };
    expect(() =>
      tf.engine().runKernel(LORAFLEET_MATMUL, { a: x, b: w, bias }, attrs as never),
    ).toThrow(/bias has 4 values, expected 5/);
    tf.dispose([x, w, bias]);
  });
});
