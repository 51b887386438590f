// The training step's kernels (src/backend/step-kernels.ts): the fused softmax
// cross-entropy on cpu and wasm and its composed fallback (the path of webgpu
// and tfjs-node), against a float64 reference in plain JS, on odd shapes with
// ignored rows; fused gelu_new and LayerNorm against their tfjs-op
// compositions on the cpu backend (SwiGLU and RMSNorm too); and wasm's
// copy-free Identity.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expPoly, tanhRational } from '../src/backend/fast-math.js';
import { SOFTMAX_XENT, SOFTMAX_XENT_GRAD } from '../src/backend/softmax-xent.js';
import { registerStepKernels } from '../src/backend/step-kernels.js';
import { tf } from '../src/backend/tf.js';
import { geluNew, geluNewComposed } from '../src/ops/gelu-new.js';
import { layerNorm, layerNormComposed } from '../src/ops/layer-norm.js';
import { swiglu, swigluComposed } from '../src/ops/gated.js';
import { rmsNorm, rmsNormComposed } from '../src/ops/rms-norm.js';
import { RMS_NORM } from '../src/backend/rms-norm.js';
import { ROTARY } from '../src/backend/rotary.js';
import { rotary, rotaryFusable } from '../src/ops/rotary.js';
import { SWIGLU } from '../src/backend/webgpu-kernels/activations.js';
import { softmaxCrossEntropy } from '../src/ops/softmax-cross-entropy.js';
import { Rng } from '../src/random.js';

type Backend = 'cpu' | 'wasm';

async function use(name: Backend): Promise<void> {
  await tf.setBackend(name);
  await tf.ready();
}

/** Logits [N, V] with a wide range (scale 30: exp overflows without the max shift). */
function problem(N: number, V: number, seed: number, scale = 3) {
  const rng = new Rng(seed);
  const logits = Float32Array.from({ length: N * V }, () => rng.normal() * scale);
  const labels = Int32Array.from({ length: N }, (_, n) =>
    n % 4 === 3 ? -100 : Math.floor(rng.uniform() * V),
  );
  const weights = Float32Array.from({ length: N }, () => 0.5 + rng.uniform()); // dloss/dnll
  return { N, V, logits, labels, weights };
}

/** nll and d(sum w * nll)/dlogits, in float64, straight from the definition. */
function reference(p: ReturnType<typeof problem>) {
  const { N, V, logits, labels, weights } = p;
  const nll = new Float64Array(N);
  const grad = new Float64Array(N * V);
  for (let n = 0; n < N; n++) {
    if (labels[n]! < 0) continue;
    const row = Array.from(logits.subarray(n * V, (n + 1) * V));
    const max = Math.max(...row);
    const z = row.reduce((a, x) => a + Math.exp(x - max), 0);
    nll[n] = max + Math.log(z) - row[labels[n]!]!;
    row.forEach((x, v) => {
      grad[n * V + v] = weights[n]! * (Math.exp(x - max) / z - (v === labels[n] ? 1 : 0));
    });
  }
  return { nll, grad };
}

/** softmaxCrossEntropy's value and gradient on the active backend. */
function measure(p: ReturnType<typeof problem>) {
  const { N, V } = p;
  return tf.tidy(() => {
    const logits = tf.tensor2d(p.logits, [N, V]);
    const labels = tf.tensor1d(p.labels, 'int32');
    const w = tf.tensor1d(p.weights);
    const nll = softmaxCrossEntropy(logits, labels);
    const grad = tf.grad((x: tf.Tensor) =>
      tf.sum(tf.mul(softmaxCrossEntropy(x as tf.Tensor2D, labels), w)),
    )(logits);
    return { nll: nll.dataSync().slice(), grad: grad.dataSync().slice() };
  });
}

function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < want.length; i++)
    m = Math.max(m, Math.abs(got[i]! - want[i]!) / (1 + Math.abs(want[i]!)));
  return m;
}

// Float32 logits and outputs; the sums are float64 in every path but the composed one.
const TOLERANCE = 2e-6;
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [7, 13, 3],
  [33, 257, 3],
  [5, 4096, 30],
];

describe.each(['cpu', 'wasm'] as const)('softmaxCrossEntropy on %s', (backend) => {
  beforeAll(async () => use(backend));

  it('runs the fused kernels there', () => {
    expect(tf.getKernel(SOFTMAX_XENT, backend)).toBeDefined();
    expect(tf.getKernel(SOFTMAX_XENT_GRAD, backend)).toBeDefined();
  });

  it.each(SHAPES)('matches the float64 definition at N=%i, V=%i (scale %i)', (N, V, scale) => {
    const p = problem(N, V, N * 31 + V, scale);
    const want = reference(p);
    const got = measure(p);
    expect(maxRelErr(got.nll, want.nll)).toBeLessThan(TOLERANCE);
    expect(maxRelErr(got.grad, want.grad)).toBeLessThan(TOLERANCE);
    p.labels.forEach((l, n) => {
      if (l < 0) expect(got.nll[n]).toBe(0);
    });
  });

  it('leaves no tensor behind, forward or backward', () => {
    const p = problem(9, 11, 5);
    measure(p);
    const before = tf.memory().numTensors;
    measure(p);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('names a label outside the vocabulary', () => {
    const logits = tf.zeros([2, 5]) as tf.Tensor2D;
    const labels = tf.tensor1d([1, 5], 'int32');
    expect(() => softmaxCrossEntropy(logits, labels)).toThrow(
      /label 5 of row 1 is outside the vocabulary \(0..4\)/,
    );
    tf.dispose([logits, labels]);
  });

  it('refuses labels of the wrong dtype or length', () => {
    const logits = tf.zeros([2, 5]) as tf.Tensor2D;
    const labels = tf.tensor1d([1, 2, 3], 'int32');
    expect(() => softmaxCrossEntropy(logits, labels)).toThrow(/labels must be int32 \[2\]/);
    tf.dispose([logits, labels]);
  });
});

describe('softmaxCrossEntropy composed from tfjs ops (webgpu, tfjs-node)', () => {
  beforeAll(async () => {
    await use('cpu');
    tf.unregisterKernel(SOFTMAX_XENT, 'cpu');
    tf.unregisterKernel(SOFTMAX_XENT_GRAD, 'cpu');
  });
  afterAll(() => {
    registerStepKernels(tf);
  });

  it.each(SHAPES)('matches the float64 definition at N=%i, V=%i (scale %i)', (N, V, scale) => {
    expect(tf.getKernel(SOFTMAX_XENT, 'cpu')).toBeUndefined();
    const p = problem(N, V, N * 17 + V, scale);
    const want = reference(p);
    const got = measure(p);
    // float32 sums here (tfjs's logSumExp and exp): a looser bound.
    expect(maxRelErr(got.nll, want.nll)).toBeLessThan(2e-5);
    expect(maxRelErr(got.grad, want.grad)).toBeLessThan(2e-5);
  });
});

describe('Identity on wasm', () => {
  beforeAll(async () => use('wasm'));

  it('shares the buffer instead of copying it, and the copy outlives the original', () => {
    const x = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
    const y = x.clone();
    expect(y.dataId).toBe(x.dataId);
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual([1, 2, 3, 4, 5, 6]);
    y.dispose();
  });

  it('keeps gradients that save their inputs equal to cpu', async () => {
    const f = (x: tf.Tensor) => tf.sum(tf.mul(tf.tanh(tf.square(x)), tf.exp(x)));
    const values = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i));
    const grads: Record<Backend, Float32Array> = {} as never;
    for (const b of ['cpu', 'wasm'] as const) {
      await use(b);
      grads[b] = tf.tidy(
        () =>
          tf
            .grad(f)(tf.tensor2d(values, [4, 6]))
            .dataSync() as Float32Array,
      );
    }
    expect(maxRelErr(grads.wasm, grads.cpu)).toBeLessThan(1e-6);
  });
});

/** Values and gradients (for every input) of sum(w * f(inputs)) on the active backend. */
function valueAndGrads(
  f: (...xs: tf.Tensor[]) => tf.Tensor,
  inputs: { shape: number[]; values: Float32Array }[],
  w: Float32Array,
): Float32Array[] {
  return tf.tidy(() => {
    const xs = inputs.map((i) => tf.tensor(i.values, i.shape));
    const weight = tf.tensor(w, inputs[0]!.shape);
    const value = f(...xs);
    const grads = tf.grads((...ys: tf.Tensor[]) => tf.sum(tf.mul(f(...ys), weight)))(xs);
    return [value, ...grads].map((t) => t.dataSync().slice() as Float32Array);
  });
}

describe.each(['cpu', 'wasm'] as const)(
  'fused gelu_new, LayerNorm, SwiGLU, RMSNorm and rotary on %s',
  (backend) => {
    const rng = new Rng(7);
    const randn = (n: number, scale = 1) =>
      Float32Array.from({ length: n }, () => rng.normal() * scale);
    // Odd shapes: rows that are not a multiple of anything, C = 1 and C = 37.
    const SHAPES: number[][] = [[1], [3, 5, 7], [2, 9, 37], [11, 1]];

    /** The reference: the tfjs-op composition with autodiff, on the cpu backend. */
    async function onCpu<T>(f: () => T): Promise<T> {
      await use('cpu');
      try {
        return f();
      } finally {
        await use(backend);
      }
    }

    beforeAll(async () => use(backend));

    it.each(SHAPES)('gelu_new, value and gradient, shape %j', async (...shape) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const x = { shape, values: randn(n, 3) };
      const w = randn(n);
      const got = valueAndGrads(geluNew, [x], w);
      const want = await onCpu(() => valueAndGrads(geluNewComposed, [x], w));
      got.forEach((g, i) => expect(maxRelErr(g, want[i]!)).toBeLessThan(2e-6));
    });

    it.each(SHAPES)(
      'LayerNorm, value and gradients of x, gamma, beta, shape %j',
      async (...shape) => {
        const C = shape.at(-1)!;
        const n = shape.reduce((a, b) => a * b, 1);
        const x = { shape, values: randn(n, 2) };
        const gamma = { shape: [C], values: randn(C) };
        const beta = { shape: [C], values: randn(C) };
        const w = randn(n);
        const fused = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => layerNorm(a, g, b, 1e-5);
        const composed = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
          layerNormComposed(a, g, b, 1e-5);
        const got = valueAndGrads(fused, [x, gamma, beta], w);
        const want = await onCpu(() => valueAndGrads(composed, [x, gamma, beta], w));
        // float32 tfjs sums in the reference over up to 99 rows: 1e-5 relative.
        got.forEach((g, i) => expect(maxRelErr(g, want[i]!)).toBeLessThan(1e-5));
      },
    );

    it.each(SHAPES)('SwiGLU, value and gradients of gate and up, shape %j', async (...shape) => {
      expect(tf.getKernel(SWIGLU, backend)).toBeDefined(); // the fused kernels run here
      const n = shape.reduce((a, b) => a * b, 1);
      const [gate, up] = [randn(n, 4), randn(n, 2)];
      gate[0] = 0;
      const inputs = [
        { shape, values: gate },
        { shape, values: up },
      ];
      const w = randn(n);
      const got = valueAndGrads(swiglu, inputs, w);
      const want = await onCpu(() => valueAndGrads(swigluComposed, inputs, w));
      got.forEach((g, i) => expect(maxRelErr(g, want[i]!)).toBeLessThan(2e-6));
    });

    it.each(SHAPES)(
      'RMSNorm with a frozen weight, value and gradient of x, shape %j',
      async (...shape) => {
        expect(tf.getKernel(RMS_NORM, backend)).toBeDefined(); // the fused kernels run here
        const C = shape.at(-1)!;
        const n = shape.reduce((a, b) => a * b, 1);
        const x = { shape, values: randn(n, 2) };
        x.values[0] = 40; // a row far from unit scale
        const weight = tf.tensor1d(randn(C));
        const w = randn(n);
        const got = valueAndGrads((a) => rmsNorm(a, weight as tf.Tensor1D, 1e-6), [x], w);
        const want = await onCpu(() => {
          const cpuWeight = tf.tensor1d(weight.dataSync());
          const out = valueAndGrads((a) => rmsNormComposed(a, cpuWeight, 1e-6), [x], w);
          cpuWeight.dispose();
          return out;
        });
        got.forEach((g, i) => expect(maxRelErr(g, want[i]!)).toBeLessThan(1e-5));
        weight.dispose();
      },
    );

    it('RMSNorm with a trained weight takes tfjs ops, and its gradient', () => {
      const weight = tf.variable(tf.tensor1d([0.5, -1, 2]), true);
      const x = tf.tensor2d([1, 2, 3, -4, 5, 0.5], [2, 3]);
      const { grads } = tf.variableGrads(
        () => tf.sum(rmsNorm(x, weight, 1e-6)) as tf.Scalar,
        [weight],
      );
      const want = tf.grad((s: tf.Tensor) => tf.sum(rmsNormComposed(x, s, 1e-6)))(weight);
      expect(
        maxRelErr(grads[weight.name]!.dataSync() as Float32Array, want.dataSync() as Float32Array),
      ).toBeLessThan(1e-6);
      tf.dispose([weight, x, want, ...Object.values(grads)]);
    });

    // x [B, H, T, D] and tables [1 or B, 1, T, D]: half of D odd (a SIMD tail), 4, 32; batch 1.
    it.each([
      [[2, 3, 5, 6], 2],
      [[1, 2, 4, 8], 1],
      [[3, 4, 7, 64], 1],
      [[2, 1, 1, 2], 2],
    ] as [number[], number][])(
      'rotary embedding on x %j (tables for %i rows): the bits of the tfjs ops, value and gradient',
      (shape, tableRows) => {
        expect(tf.getKernel(ROTARY, backend)).toBeDefined();
        const [, , T, D] = shape as [number, number, number, number];
        const n = shape.reduce((a, b) => a * b, 1);
        const x = { shape, values: randn(n, 3) };
        const table = [tableRows, 1, T, D];
        const [cos, sin] = [randn(tableRows * T * D), randn(tableRows * T * D)].map((v) =>
          tf.tensor4d(v, table as [number, number, number, number]),
        );
        const composed = (a: tf.Tensor) => {
          const [a1, a2] = tf.split(a, 2, -1);
          return tf.add(tf.mul(a, cos!), tf.mul(tf.concat([tf.neg(a2!), a1!], -1), sin!));
        };
        expect(rotaryFusable(tf.zeros(shape), cos!)).toBe(true);
        const w = randn(n);
        const got = valueAndGrads((a) => rotary(a as tf.Tensor4D, cos!, sin!), [x], w);
        const want = valueAndGrads(composed, [x], w);
        got.forEach((g, i) => expect(Array.from(g)).toEqual(Array.from(want[i]!)));
        expect(maxRelErr(got[1]!, want[1]!)).toBe(0);
        tf.dispose([cos!, sin!]);
      },
    );

    it('rotary: not for an odd width, tables of another length or batch, or rank 3', () => {
      tf.tidy(() => {
        const t = tf.zeros([1, 1, 4, 6]);
        expect(rotaryFusable(tf.zeros([1, 2, 4, 6]), t)).toBe(true);
        expect(rotaryFusable(tf.zeros([1, 2, 4, 5]), tf.zeros([1, 1, 4, 5]))).toBe(false);
        expect(rotaryFusable(tf.zeros([1, 2, 3, 6]), t)).toBe(false);
        expect(rotaryFusable(tf.zeros([2, 4, 6]), t)).toBe(false);
        expect(rotaryFusable(tf.zeros([3, 2, 4, 6]), tf.zeros([2, 1, 4, 6]))).toBe(false);
      });
    });

    it('leaves no tensor behind', () => {
      const x = { shape: [4, 6], values: randn(24) };
      const gb = { shape: [6], values: randn(6) };
      const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
        swiglu(geluNew(rmsNorm(layerNorm(a, g, b, 1e-5), b as tf.Tensor1D, 1e-6)), a);
      valueAndGrads(f, [x, gb, gb], randn(24));
      const before = tf.memory().numTensors;
      valueAndGrads(f, [x, gb, gb], randn(24));
      expect(tf.memory().numTensors).toBe(before);
    });

    it('names a gamma of the wrong width', () => {
      const x = tf.zeros([2, 4]);
      const g = tf.zeros([3]);
      expect(() => layerNorm(x, g, g, 1e-5)).toThrow(
        /gamma must be \[4\] for x \[2, 4\], got \[3\]/,
      );
      tf.dispose([x, g]);
    });
  },
);

describe('fast-math', () => {
  it('tanhRational is within 3e-7 of Math.tanh, odd, and saturates', () => {
    let worst = 0;
    for (let i = -40000; i <= 40000; i++) {
      const x = i / 1000;
      worst = Math.max(worst, Math.abs(tanhRational(x) - Math.tanh(x)));
      expect(tanhRational(-x)).toBe(-tanhRational(x));
    }
    expect(worst).toBeLessThan(3e-7);
    expect(tanhRational(1e30)).toBeCloseTo(1, 6);
    expect(tanhRational(1e-30)).toBeCloseTo(1e-30, 36);
  });

  it('expPoly is within 3e-8 relative of Math.exp over the float64 range', () => {
    let worst = 0;
    for (let i = -74400; i <= 70990; i++) {
      const x = i / 100 + 0.003;
      const want = Math.exp(x);
      if (want > 0 && want < Infinity) worst = Math.max(worst, Math.abs(expPoly(x) - want) / want);
    }
    expect(worst).toBeLessThan(3e-8); // below half a float32 ulp (6e-8)
    expect(expPoly(-1000)).toBe(0);
    expect(expPoly(-Infinity)).toBe(0);
    expect(expPoly(709.7) / Math.exp(709.7)).toBeCloseTo(1, 12);
    expect(expPoly(1000)).toBe(Infinity);
    expect(expPoly(NaN)).toBeNaN();
  });
});
