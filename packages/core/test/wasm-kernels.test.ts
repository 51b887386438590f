// The kernels this project adds to the wasm backend (src/backend/wasm-kernels.ts),
// checked against the reference cpu backend, plus a transformer-shaped
// forward/backward on wasm that must agree with cpu gradient by gradient.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../src/backend/tf.js';
import { Rng } from '../src/random.js';

type Backend = 'cpu' | 'wasm';

async function use(name: Backend): Promise<void> {
  await tf.setBackend(name);
  await tf.ready();
  expect(tf.getBackend()).toBe(name);
}

function randn(size: number, rng: Rng, scale = 1): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = rng.normal() * scale;
  return out;
}

function randInt(size: number, lo: number, hi: number, rng: Rng): Int32Array {
  const out = new Int32Array(size);
  for (let i = 0; i < size; i++) out[i] = lo + Math.floor(rng.uniform() * (hi - lo));
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** TensorFlow's definition, in plain JS (float64 sums): the independent reference. */
function referenceSegmentSum(
  x: ArrayLike<number>,
  xShape: number[],
  ids: ArrayLike<number>,
  numSegments: number,
): Float64Array {
  const inner = xShape.length === 0 ? 1 : x.length / ids.length;
  const out = new Float64Array(numSegments * inner);
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i]!;
    if (s < 0 || s >= numSegments) continue;
    for (let j = 0; j < inner; j++) out[s * inner + j]! += x[i * inner + j]!;
  }
  return out;
}

/** Runs `f` on each backend (inputs built from plain arrays there) and returns its values. */
async function onBackends(
  f: () => tf.Tensor,
): Promise<Record<Backend, { shape: number[]; values: Float32Array | Int32Array }>> {
  const result = {} as Record<Backend, { shape: number[]; values: Float32Array | Int32Array }>;
  for (const name of ['cpu', 'wasm'] as const) {
    await use(name);
    const t = f();
    result[name] = { shape: t.shape, values: t.dataSync() as Float32Array | Int32Array };
    t.dispose();
  }
  return result;
}

describe('UnsortedSegmentSum on wasm', () => {
  beforeAll(async () => {
    await use('wasm');
  });

  it('is registered for wasm by importing backend/tf.ts', () => {
    expect(tf.getKernel('UnsortedSegmentSum', 'wasm')).toBeDefined();
  });

  it('sums a hand-worked example: repeated, negative and out-of-range ids, empty segments', async () => {
    await use('wasm');
    const x = tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [5, 2]);
    const ids = tf.tensor1d([1, -1, 1, 5, 3], 'int32');
    const out = tf.unsortedSegmentSum(x, ids, 4);
    expect(out.shape).toEqual([4, 2]);
    expect(Array.from(out.dataSync())).toEqual([0, 0, 6, 8, 0, 0, 9, 10]);
    tf.dispose([x, ids, out]);
  });

  const cases: { name: string; xShape: number[]; lo: number; hi: number; numSegments: number }[] = [
    { name: '1-D x', xShape: [64], lo: 0, hi: 10, numSegments: 10 },
    { name: '2-D x, repeated ids', xShape: [300, 7], lo: 0, hi: 20, numSegments: 20 },
    { name: '2-D x, ids out of range', xShape: [120, 5], lo: -4, hi: 16, numSegments: 12 },
    { name: '3-D x, ids out of range', xShape: [90, 3, 4], lo: -2, hi: 9, numSegments: 7 },
    { name: '3-D x, numSegments > max id + 1', xShape: [50, 2, 6], lo: 0, hi: 5, numSegments: 11 },
  ];
  for (const c of cases) {
    it(`matches cpu and the reference: ${c.name}`, async () => {
      const rng = new Rng(c.xShape.reduce((a, b) => a * b, 1) + c.numSegments);
      const size = c.xShape.reduce((a, b) => a * b, 1);
      const xData = randn(size, rng);
      const idData = randInt(c.xShape[0]!, c.lo, c.hi, rng);
      const got = await onBackends(() =>
        tf.tidy(() =>
          tf.unsortedSegmentSum(
            tf.tensor(xData, c.xShape),
            tf.tensor1d(idData, 'int32'),
            c.numSegments,
          ),
        ),
      );
      const ref = referenceSegmentSum(xData, c.xShape, idData, c.numSegments);
      expect(got.wasm.shape).toEqual([c.numSegments, ...c.xShape.slice(1)]);
      expect(got.wasm.shape).toEqual(got.cpu.shape);
      expect(maxAbsDiff(got.wasm.values, got.cpu.values)).toBeLessThanOrEqual(1e-6);
      expect(maxAbsDiff(got.wasm.values, ref)).toBeLessThanOrEqual(1e-6);
      // The case must exercise something: some segment gets several rows, and
      // with spare segments or dropped ids some output rows are exactly zero.
      expect(maxAbs(got.wasm.values)).toBeGreaterThan(1);
    });
  }

  it('sums int32 x exactly', async () => {
    const rng = new Rng(7);
    const xData = randInt(80 * 3, -50, 50, rng);
    const idData = randInt(80, -1, 6, rng);
    const got = await onBackends(() =>
      tf.tidy(() =>
        tf.unsortedSegmentSum(
          tf.tensor2d(xData, [80, 3], 'int32'),
          tf.tensor1d(idData, 'int32'),
          6,
        ),
      ),
    );
    expect(Array.from(got.wasm.values)).toEqual(
      Array.from(referenceSegmentSum(xData, [80, 3], idData, 6)),
    );
  });

  it('follows TensorFlow for rank-2 segmentIds (a prefix of x.shape)', async () => {
    // The cpu kernel only reduces axis 0 here, so the reference is plain JS.
    await use('wasm');
    const rng = new Rng(11);
    const xData = randn(4 * 5 * 3, rng);
    const idData = randInt(4 * 5, -1, 6, rng);
    const out = tf.tidy(() =>
      tf.unsortedSegmentSum(
        tf.tensor3d(xData, [4, 5, 3]),
        tf.tensor2d(idData, [4, 5], 'int32') as unknown as tf.Tensor1D,
        6,
      ),
    );
    expect(out.shape).toEqual([6, 3]);
    expect(
      maxAbsDiff(out.dataSync(), referenceSegmentSum(xData, [4, 5, 3], idData, 6)),
    ).toBeLessThanOrEqual(1e-6);
    out.dispose();
  });

  it('reads its inputs correctly when allocating the output grows the wasm heap', async () => {
    await use('wasm');
    const heap = (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm;
    const heapBefore = heap.HEAPU8.byteLength;
    // An output larger than the whole heap cannot fit: makeOutput must grow it,
    // which detaches every view of the old buffer.
    const numSegments = Math.ceil(heapBefore / 4) + 1;
    const x = tf.tensor1d([1.5, 2, 3, 4.25]);
    const ids = tf.tensor1d([numSegments - 1, 0, numSegments - 1, 7], 'int32');
    const out = tf.unsortedSegmentSum(x, ids, numSegments);
    expect(heap.HEAPU8.byteLength).toBeGreaterThan(heapBefore);
    const v = out.dataSync();
    expect(v.length).toBe(numSegments);
    expect([v[0], v[7], v[numSegments - 1]]).toEqual([2, 4.25, 4.5]);
    let nonZero = 0;
    for (let i = 0; i < v.length; i++) if (v[i] !== 0) nonZero++;
    expect(nonZero).toBe(3);
    tf.dispose([x, ids, out]);
  });

  it('rejects segmentIds that are not a prefix of x.shape', async () => {
    await use('wasm');
    const x = tf.zeros([4, 3]);
    const ids = tf.tensor1d([0, 1, 2], 'int32');
    expect(() => tf.unsortedSegmentSum(x, ids, 3)).toThrow(/prefix/);
    tf.dispose([x, ids]);
  });

  it('matches cpu on the gradient of an embedding lookup within 1e-6', async () => {
    const rng = new Rng(3);
    const [V, C, N] = [37, 16, 200];
    const tableData = randn(V * C, rng);
    const idData = randInt(N, 0, V - 5, rng); // repeats, and the last rows get no gradient
    const wData = randn(N * C, rng);
    const got = await onBackends(() =>
      tf.tidy(() => {
        const ids = tf.tensor1d(idData, 'int32');
        const w = tf.tensor2d(wData, [N, C]);
        const g = tf.grad((table: tf.Tensor) => tf.sum(tf.mul(tf.gather(table, ids), w)));
        return g(tf.tensor2d(tableData, [V, C]));
      }),
    );
    expect(got.wasm.shape).toEqual([V, C]);
    expect(maxAbsDiff(got.wasm.values, got.cpu.values)).toBeLessThanOrEqual(1e-6);
    expect(
      maxAbsDiff(got.wasm.values, referenceSegmentSum(wData, [N, C], idData, V)),
    ).toBeLessThanOrEqual(1e-5);
    expect(maxAbs(got.wasm.values)).toBeGreaterThan(1);
  });

  it('matches cpu on the gradient of gather along axis 1', async () => {
    const rng = new Rng(5);
    const [B, V, C, N] = [3, 9, 4, 14];
    const tableData = randn(B * V * C, rng);
    const idData = randInt(N, 0, V, rng);
    const wData = randn(B * N * C, rng);
    const got = await onBackends(() =>
      tf.tidy(() => {
        const ids = tf.tensor1d(idData, 'int32');
        const w = tf.tensor3d(wData, [B, N, C]);
        const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, ids, 1), w)));
        return g(tf.tensor3d(tableData, [B, V, C]));
      }),
    );
    expect(got.wasm.shape).toEqual([B, V, C]);
    expect(maxAbsDiff(got.wasm.values, got.cpu.values)).toBeLessThanOrEqual(1e-6);
  });

  it('leaks no tensor or wasm buffer', async () => {
    await use('wasm');
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const x = tf.randomNormal([64, 8]);
    const ids = tf.tensor1d(randInt(64, -2, 12, new Rng(1)), 'int32');
    const table = tf.randomNormal([10, 8]);
    const gatherIds = tf.tensor1d(randInt(64, 0, 10, new Rng(2)), 'int32');
    const before = tf.memory().numTensors;
    const buffersBefore = backend.numDataIds();
    for (let step = 0; step < 3; step++) {
      tf.unsortedSegmentSum(x, ids, 10).dispose();
      tf.tidy(() =>
        tf
          .grad((t: tf.Tensor) => tf.sum(tf.gather(t, gatherIds)))(table)
          .dataSync(),
      );
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(backend.numDataIds()).toBe(buffersBefore);
    tf.dispose([x, ids, table, gatherIds]);
  });
});

// A one-block GPT-2-shaped model: token + position embeddings, pre-LN causal
// self-attention, tanh-GELU MLP, tied output embedding, cross-entropy through
// logSoftmax with both a oneHot and a gather pick of the target log-probs.
describe('transformer-ish forward/backward on wasm vs cpu', () => {
  const [B, T, V, C, H] = [2, 6, 23, 16, 2];
  const D = C / H;
  const shapes: Record<string, number[]> = {
    wte: [V, C],
    wpe: [T + 2, C], // sliced to T
    ln1g: [C],
    ln1b: [C],
    wq: [C, C],
    wk: [C, C],
    wv: [C, C], // concatenated into one [C, 3C] projection, split after
    bqkv: [3 * C],
    wo: [C, C],
    ln2g: [C],
    ln2b: [C],
    wfc: [C, 4 * C],
    bfc: [4 * C],
    wproj: [4 * C, C],
    lnfg: [C],
    lnfb: [C],
  };
  const rng = new Rng(2024);
  const init: Record<string, Float32Array> = {};
  for (const [name, shape] of Object.entries(shapes)) {
    const size = shape.reduce((a, b) => a * b, 1);
    init[name] = name.endsWith('g')
      ? Float32Array.from(randn(size, rng, 0.1), (v) => 1 + v)
      : randn(size, rng, name.startsWith('w') ? 0.3 : 0.1);
  }
  const tokens = randInt(B * T, 0, V, rng);
  const targets = randInt(B * T, 0, V, rng);

  function layerNorm(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Tensor {
    const mu = tf.mean(x, -1, true);
    const xc = tf.sub(x, mu);
    const variance = tf.mean(tf.square(xc), -1, true);
    return tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(variance, 1e-5))), g), b);
  }

  function gelu(x: tf.Tensor): tf.Tensor {
    const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
    return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
  }

  function loss(p: Record<string, tf.Variable>): tf.Scalar {
    const v = (name: string): tf.Variable => p[name]!;
    const ids = tf.tensor1d(tokens, 'int32');
    const tok = tf.reshape(tf.gather(v('wte'), ids), [B, T, C]);
    const pos = tf.slice(v('wpe'), [0, 0], [T, C]);
    let h = tf.add(tok, pos); // [B, T, C]

    // attention
    const a = tf.reshape(layerNorm(h, v('ln1g'), v('ln1b')), [B * T, C]);
    const wqkv = tf.concat([v('wq'), v('wk'), v('wv')], 1);
    const qkv = tf.add(tf.matMul(a, wqkv), v('bqkv'));
    const heads = tf
      .split(qkv, 3, 1)
      .map((t) => tf.transpose(tf.reshape(t, [B, T, H, D]), [0, 2, 1, 3])); // [B, H, T, D]
    const [q, k, vv] = heads as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
    const scores = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(D)); // [B, H, T, T]
    const causal = tf.greaterEqual(tf.range(0, T).reshape([T, 1]), tf.range(0, T).reshape([1, T]));
    const masked = tf.where(
      tf.broadcastTo(causal, [B, H, T, T]),
      scores,
      tf.fill([B, H, T, T], -1e9),
    );
    const att = tf.softmax(masked, -1);
    const y = tf.reshape(tf.transpose(tf.matMul(att, vv), [0, 2, 1, 3]), [B * T, C]);
    h = tf.add(h, tf.reshape(tf.matMul(y, v('wo')), [B, T, C]));

    // MLP
    const m = tf.reshape(layerNorm(h, v('ln2g'), v('ln2b')), [B * T, C]);
    const fc = gelu(tf.add(tf.matMul(m, v('wfc')), v('bfc')));
    h = tf.add(h, tf.reshape(tf.matMul(fc, v('wproj')), [B, T, C]));

    // tied head and two cross-entropies
    const f = tf.reshape(layerNorm(h, v('lnfg'), v('lnfb')), [B * T, C]);
    const logits = tf.matMul(f, v('wte'), false, true); // [B*T, V]
    const logp = tf.logSoftmax(logits);
    const tgt = tf.tensor1d(targets, 'int32');
    const ceOneHot = tf.neg(tf.mean(tf.sum(tf.mul(tf.oneHot(tgt, V), logp), -1)));
    const flatIdx = tf.tensor1d(
      targets.map((t, i) => i * V + t),
      'int32',
    );
    const ceGather = tf.neg(tf.mean(tf.gather(tf.reshape(logp, [-1]), flatIdx)));
    return tf.add(ceOneHot, tf.mul(0.5, ceGather)) as tf.Scalar;
  }

  async function run(
    name: Backend,
  ): Promise<{ loss: number; grads: Record<string, Float32Array>; leaked: number }> {
    await use(name);
    const vars: Record<string, tf.Variable> = {};
    for (const [key, shape] of Object.entries(shapes)) {
      vars[key] = tf.variable(tf.tensor(init[key]!, shape), true, `smoke_${name}_${key}`);
    }
    const before = tf.memory().numTensors;
    const { value, grads } = tf.variableGrads(() => loss(vars), Object.values(vars));
    const out: Record<string, Float32Array> = {};
    for (const [key, variable] of Object.entries(vars)) {
      const g = grads[variable.name];
      expect(g, `gradient of ${key} on ${name}`).toBeDefined();
      expect(g!.shape).toEqual(shapes[key]);
      out[key] = g!.dataSync() as Float32Array;
    }
    const lossValue = value.dataSync()[0]!;
    tf.dispose([value, ...Object.values(grads)]);
    const leaked = tf.memory().numTensors - before;
    tf.dispose(Object.values(vars));
    return { loss: lossValue, grads: out, leaked };
  }

  let cpu: Awaited<ReturnType<typeof run>>;
  let wasm: Awaited<ReturnType<typeof run>>;
  beforeAll(async () => {
    cpu = await run('cpu');
    wasm = await run('wasm');
  });
  afterAll(async () => {
    await use('wasm');
  });

  it('runs forward and backward on wasm without leaking tensors', () => {
    expect(Number.isFinite(wasm.loss)).toBe(true);
    expect(wasm.loss).toBeGreaterThan(1);
    expect(wasm.leaked).toBe(0);
    expect(cpu.leaked).toBe(0);
  });

  it('gives the same loss as cpu', () => {
    expect(Math.abs(wasm.loss - cpu.loss)).toBeLessThanOrEqual(1e-4 * Math.abs(cpu.loss));
  });

  for (const key of Object.keys(shapes)) {
    it(`gives the same gradient as cpu for ${key} (1e-4 relative)`, () => {
      const ref = cpu.grads[key]!;
      const got = wasm.grads[key]!;
      const scale = maxAbs(ref);
      expect(scale, `gradient of ${key} is zero: the check would be vacuous`).toBeGreaterThan(1e-6);
      expect(maxAbsDiff(got, ref) / scale).toBeLessThanOrEqual(1e-4);
    });
  }
});
