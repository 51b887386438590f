// DoRA (use_dora) on LoraLinear, on every compute backend, against an
// independent float64 implementation written from the paper (arXiv
// 2402.09353) and PEFT's DoraLinearLayer: the forward pass (also with LoRA
// dropout, whose base term PEFT takes on the dropped input), the gradients
// of A, B and the magnitude with the norm ||W + s B A|| held constant (the
// paper's section 4.3, PEFT's detach), PEFT's initialisation (m = ||W|| per
// row, so a fresh adapter changes nothing), merge == unmerged, and unmerge
// restoring W. Both orientations of W ([out, in], and GPT-2's [in, out]).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LoraLinear,
  Rng,
  TrainableParameters,
  lossAndGradsAsync,
  releaseWebGpu,
  seededDropout,
  tf,
  useBackend,
} from '../src/index.js';
import { testBackends } from '../src/testing/index.js';

const [N, IN, OUT, R] = [4, 6, 5, 3];
const SETTINGS = { r: R, alpha: 6, dropout: 0, rslora: false, useDora: true };
const S = SETTINGS.alpha / SETTINGS.r;

function values(n: number, seed: number, scale = 1): Float64Array {
  const rng = new Rng(seed);
  return Float64Array.from({ length: n }, () => rng.normal() * scale);
}

/** The case in float64: W [out, in], bias, A [r, in], B [out, r], m [out], x [N, in], loss weights c [N, out]. */
const W = values(OUT * IN, 1);
const BIAS = values(OUT, 2);
const A = values(R * IN, 3, 0.5);
const B = values(OUT * R, 4, 0.5);
const M = values(OUT, 5).map((v) => 2 + 0.5 * v);
const X = values(N * IN, 6);
const C = values(N * OUT, 7);

/** W + s B A [out, in] and its row norms. */
function fullWeight(): { full: Float64Array; norms: Float64Array } {
  const full = Float64Array.from(W);
  for (let o = 0; o < OUT; o++)
    for (let i = 0; i < IN; i++)
      for (let k = 0; k < R; k++) full[o * IN + i]! += S * B[o * R + k]! * A[k * IN + i]!;
  const norms = new Float64Array(OUT);
  for (let o = 0; o < OUT; o++) {
    let ss = 0;
    for (let i = 0; i < IN; i++) ss += full[o * IN + i]! ** 2;
    norms[o] = Math.sqrt(ss);
  }
  return { full, norms };
}

/** x [N, in] times rows of w [out, in], plus bias where given: [N, out]. */
function linear(x: ArrayLike<number>, w: ArrayLike<number>, bias: ArrayLike<number> | null) {
  const y = new Float64Array(N * OUT);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < OUT; o++) {
      let s = bias ? bias[o]! : 0;
      for (let i = 0; i < IN; i++) s += x[n * IN + i]! * w[o * IN + i]!;
      y[n * OUT + o] = s;
    }
  return y;
}

/** PEFT's DoRA forward: x W^T + b + (g - 1) x' W^T + g s x' A^T B^T, g = m / ||W + s B A||. */
function referenceForward(xDropped: ArrayLike<number>): Float64Array {
  const { norms } = fullWeight();
  const base = linear(X, W, BIAS);
  const dropped = linear(xDropped, W, null);
  const ba = new Float64Array(OUT * IN); // s B A
  for (let o = 0; o < OUT; o++)
    for (let i = 0; i < IN; i++)
      for (let k = 0; k < R; k++) ba[o * IN + i]! += S * B[o * R + k]! * A[k * IN + i]!;
  const lora = linear(xDropped, ba, null);
  return base.map((v, j) => {
    const g = M[j % OUT]! / norms[j % OUT]!;
    return v + (g - 1) * dropped[j]! + g * lora[j]!;
  });
}

/** d(sum c * y) for A, B and m, the norm held constant (fused in the parameters' order: A, B, m). */
function referenceGrads(): Float64Array {
  const { full, norms } = fullWeight();
  const g = M.map((m, o) => m / norms[o]!);
  const ctx = new Float64Array(OUT * IN); // c^T x
  for (let n = 0; n < N; n++)
    for (let o = 0; o < OUT; o++)
      for (let i = 0; i < IN; i++) ctx[o * IN + i]! += C[n * OUT + o]! * X[n * IN + i]!;
  const G = ctx.map((v, j) => g[Math.floor(j / IN)]! * v); // d/d(W + s B A)
  const dA = new Float64Array(R * IN);
  const dB = new Float64Array(OUT * R);
  for (let k = 0; k < R; k++)
    for (let i = 0; i < IN; i++)
      for (let o = 0; o < OUT; o++) dA[k * IN + i]! += S * B[o * R + k]! * G[o * IN + i]!;
  for (let o = 0; o < OUT; o++)
    for (let k = 0; k < R; k++)
      for (let i = 0; i < IN; i++) dB[o * R + k]! += S * G[o * IN + i]! * A[k * IN + i]!;
  const dM = new Float64Array(OUT);
  for (let o = 0; o < OUT; o++) {
    for (let i = 0; i < IN; i++) dM[o]! += ctx[o * IN + i]! * full[o * IN + i]!;
    dM[o]! /= norms[o]!;
  }
  return Float64Array.from([...dA, ...dB, ...dM]);
}

/** The case as a LoraLinear with W stored [out, in], or [in, out] (fanInFanOut). */
function layer(fanInFanOut: boolean, settings = SETTINGS): LoraLinear {
  const w = tf.tidy(() => {
    const outIn = tf.tensor2d(Float32Array.from(W), [OUT, IN]);
    return fanInFanOut ? outIn.transpose() : outIn;
  }) as tf.Tensor2D;
  const bias = tf.tensor1d(Float32Array.from(BIAS));
  const l = new LoraLinear({ name: 'model.layers.0.mlp.up_proj', weight: w, bias, fanInFanOut });
  tf.dispose([w, bias]);
  l.loadAdapter(
    'default',
    settings,
    Float32Array.from(A),
    Float32Array.from(B),
    Float32Array.from(M),
  );
  return l;
}

async function read(t: tf.Tensor): Promise<Float32Array> {
  const v = (await t.data()) as Float32Array;
  t.dispose();
  return v;
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

const backends = testBackends();

describe.each(backends)('DoRA on LoraLinear (%s)', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });
  afterAll(() => {
    if (backend === 'webgpu') releaseWebGpu();
  });
  const x = () => tf.tensor2d(Float32Array.from(X), [N, IN]);

  describe.each([false, true])('fanInFanOut %s', (fanInFanOut) => {
    it('forward equals the float64 reference, and merged equals unmerged', async () => {
      const l = layer(fanInFanOut);
      try {
        const want = referenceForward(X);
        expect(maxAbsDiff(await read(tf.tidy(() => l.forward(x()))), want)).toBeLessThan(1e-4);
        const before = await read(l.weight.clone());
        l.merge();
        expect(maxAbsDiff(await read(tf.tidy(() => l.forward(x()))), want)).toBeLessThan(1e-4);
        l.unmerge();
        expect(maxAbsDiff(await read(l.weight.clone()), before)).toBeLessThan(1e-5);
      } finally {
        l.dispose();
      }
    });

    it('gradients of A, B and the magnitude hold the norm constant', async () => {
      const l = layer(fanInFanOut);
      try {
        const params = TrainableParameters.fromLoraLayers([l]);
        expect(params.slots.map((s) => s.name.split('.').pop())).toEqual([
          'lora_A',
          'lora_B',
          'lora_magnitude_vector',
        ]);
        const c = tf.tensor2d(Float32Array.from(C), [N, OUT]);
        const { grads } = await lossAndGradsAsync(params, () => tf.sum(tf.mul(l.forward(x()), c)));
        c.dispose();
        const want = referenceGrads();
        const scale = Math.max(...want.map(Math.abs));
        expect(maxAbsDiff(grads, want) / scale).toBeLessThan(1e-5);
      } finally {
        l.dispose();
      }
    });
  });

  it('with LoRA dropout, the base term and the LoRA path read the dropped input', async () => {
    const l = layer(false, { ...SETTINGS, dropout: 0.5 });
    try {
      const seed = 99;
      const dropped = await read(tf.tidy(() => seededDropout(x(), 0.5, seed)));
      expect(dropped.filter((v) => v === 0).length).toBeGreaterThan(0);
      const y = await read(tf.tidy(() => l.forward(x(), { training: true, dropoutSeed: seed })));
      expect(maxAbsDiff(y, referenceForward(dropped))).toBeLessThan(1e-4);
      expect(maxAbsDiff(y, referenceForward(X))).toBeGreaterThan(1e-2); // the mask mattered
    } finally {
      l.dispose();
    }
  });

  it("initialises m to W's row norms, so a fresh adapter (B = 0) leaves the layer as it was", async () => {
    const w = tf.tensor2d(Float32Array.from(W), [OUT, IN]);
    const l = new LoraLinear({ name: 'q_proj', weight: w });
    w.dispose();
    try {
      const adapter = l.addAdapter('default', SETTINGS, { kind: 'kaiming' }, 3);
      const norms = Array.from({ length: OUT }, (_, o) =>
        Math.hypot(...W.subarray(o * IN, (o + 1) * IN)),
      );
      expect(maxAbsDiff(await read(adapter.magnitude!.clone()), norms)).toBeLessThan(1e-5);
      const y = await read(tf.tidy(() => l.forward(x())));
      expect(maxAbsDiff(y, linear(X, W, null))).toBeLessThan(1e-4);
    } finally {
      l.dispose();
    }
  });
});

it('a magnitude without use_dora, or of the wrong length, is refused by name', async () => {
  await useBackend('cpu');
  const w = tf.tensor2d(Float32Array.from(W), [OUT, IN]);
  const l = new LoraLinear({ name: 'q_proj', weight: w });
  w.dispose();
  try {
    const [a, b] = [new Float32Array(R * IN), new Float32Array(OUT * R)];
    const plain = { ...SETTINGS, useDora: false };
    expect(() => l.loadAdapter('x', plain, a, b, new Float32Array(OUT))).toThrow(
      /q_proj: adapter "x" has a DoRA magnitude of 5 values; use_dora is off/,
    );
    expect(() => l.loadAdapter('y', SETTINGS, a, b, new Float32Array(2))).toThrow(
      /has a DoRA magnitude of 2 values; it needs 5 \(one per output\)/,
    );
  } finally {
    l.dispose();
  }
});
