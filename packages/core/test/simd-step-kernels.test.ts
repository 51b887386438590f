// The wasm backend's SIMD step kernels (assembly/softmax-xent.ts,
// gelu-new.ts, layer-norm.ts, run through the registered
// LoraFleetSoftmaxXent(Grad), LoraFleetGeluNew(Grad) and
// LoraFleetLayerNorm(Grad)) against the cpu backend's TypeScript kernels,
// the reference, on odd shapes: vocabularies that are not a multiple of 4,
// ignored rows, logits of +-80, a batch of one; forward and gradient.
//
// Tolerances, as maxRelErr (|got - want| / (1 + |want|), element by element):
// 1e-6 for the loss and its gradient (exp in f32x4 is ~1 ulp, the row sums
// are float64 as in the reference; measured here: nll equal or 1 ulp apart,
// gradients <= 1.1e-7), 1e-6 for gelu_new and its gradient (measured
// <= 2.9e-7), 1e-6 for LayerNorm's y, dx, dgamma, dbeta (measured y
// <= 2.6e-7, dx <= 1.5e-7, dgamma and dbeta equal: their sums are float64
// terms as in the reference). SIMD_ERRORS=1 prints each measured error.
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  GELU_NEW,
  GELU_NEW_GRAD,
  LAYER_NORM,
  LAYER_NORM_GRAD,
} from '../src/backend/gelu-layer-norm.js';
import { simdKernels } from '../src/backend/simd/instance.js';
import {
  SOFTMAX_XENT,
  SOFTMAX_XENT_GRAD,
  type HostKernelConfig,
} from '../src/backend/softmax-xent.js';
import { tf } from '../src/backend/tf.js';
import { geluNew } from '../src/ops/gelu-new.js';
import { layerNorm } from '../src/ops/layer-norm.js';
import { swiglu } from '../src/ops/gated.js';
import { rmsNorm } from '../src/ops/rms-norm.js';
import { rotary } from '../src/ops/rotary.js';
import { ROTARY } from '../src/backend/rotary.js';
import { RMS_NORM, RMS_NORM_GRAD } from '../src/backend/rms-norm.js';
import { SWIGLU, SWIGLU_GRAD } from '../src/backend/webgpu-kernels/activations.js';
import { softmaxCrossEntropy } from '../src/ops/softmax-cross-entropy.js';
import { Rng } from '../src/random.js';

type Backend = 'cpu' | 'wasm';
const TOLERANCE = 1e-6;

async function use(name: Backend): Promise<void> {
  await tf.setBackend(name);
  await tf.ready();
}

function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i]! - want[i]!) / (1 + Math.abs(want[i]!));
    m = Math.max(m, e === e ? e : Infinity); // a NaN fails the bound
  }
  if (process.env.SIMD_ERRORS) console.log('max rel err', want.length, m);
  return m;
}

/** Logits [N, V]: normal * scale, with `extreme` of them at +-80; every 4th row ignored. */
function problem(N: number, V: number, seed: number, scale: number, extreme = 0) {
  const rng = new Rng(seed);
  const logits = Float32Array.from({ length: N * V }, () =>
    rng.uniform() < extreme ? (rng.uniform() < 0.5 ? -80 : 80) : rng.normal() * scale,
  );
  const labels = Int32Array.from({ length: N }, (_, n) =>
    n % 4 === 3 ? -100 : Math.floor(rng.uniform() * V),
  );
  const weights = Float32Array.from({ length: N }, () => 0.5 + rng.uniform());
  return { N, V, logits, labels, weights };
}

/** nll, and the gradient of sum(w * nll) (per-row dnll) and of sum(nll) (a scalar dnll). */
function measure(p: ReturnType<typeof problem>) {
  return tf.tidy(() => {
    const logits = tf.tensor2d(p.logits, [p.N, p.V]);
    const labels = tf.tensor1d(p.labels, 'int32');
    const w = tf.tensor1d(p.weights);
    const loss = (x: tf.Tensor) => softmaxCrossEntropy(x as tf.Tensor2D, labels);
    return {
      nll: loss(logits).dataSync().slice(),
      grad: tf
        .grad((x: tf.Tensor) => tf.sum(tf.mul(loss(x), w)))(logits)
        .dataSync()
        .slice(),
      gradMean: tf
        .grad((x: tf.Tensor) => tf.mean(loss(x)))(logits)
        .dataSync()
        .slice(),
    };
  });
}

async function onBoth<T>(f: () => T): Promise<Record<Backend, T>> {
  await use('cpu');
  const cpu = f();
  await use('wasm');
  return { cpu, wasm: f() };
}

beforeAll(async () => use('wasm'));

describe('SwiGLU: wasm SIMD against the cpu kernel', () => {
  const rng = new Rng(13);
  // Sizes 1, 3 and 257 (tails), 4099; gate scale 3, and 40 (sigmoid saturated both ways).
  it.each([
    [[1], 3],
    [[3], 3],
    [[257], 3],
    [[4099], 3],
    [[7, 37], 40],
  ] as [number[], number][])(
    'shape %j, gate scale %i, value and gradients',
    async (shape, scale) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const gate = Float32Array.from({ length: n }, () => rng.normal() * scale);
      gate[0] = 0;
      const up = Float32Array.from({ length: n }, () => rng.normal());
      const w = Float32Array.from({ length: n }, () => rng.normal());
      const got = await onBoth(() =>
        tf.tidy(() => {
          const [g, u, wt] = [gate, up, w].map((v) => tf.tensor(v, shape));
          const f = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(swiglu(a, b), wt!));
          const [dg, du] = tf.grads(f)([g!, u!]);
          return [swiglu(g!, u!), dg!, du!].map((t) => t.dataSync().slice());
        }),
      );
      for (let i = 0; i < 3; i++)
        expect(maxRelErr(got.wasm[i]!, got.cpu[i]!)).toBeLessThan(TOLERANCE);
    },
  );
});

describe('RMSNorm: wasm SIMD against the cpu kernel', () => {
  const rng = new Rng(17);
  // Widths 1, 3 (tails only), 4, 37 (a tail) and 256; a row at scale 1e3 and one of zeros.
  it.each([[[1, 1]], [[5, 3]], [[2, 4]], [[7, 37]], [[3, 2, 256]]] as [number[]][])(
    'shape %j, value and gradient of x',
    async (shape) => {
      const C = shape.at(-1)!;
      const n = shape.reduce((a, b) => a * b, 1);
      const x = Float32Array.from({ length: n }, () => rng.normal());
      x.fill(0, 0, C);
      if (n > C) for (let c = C; c < 2 * C; c++) x[c] = x[c]! * 1e3;
      const gamma = Float32Array.from({ length: C }, () => rng.normal());
      const w = Float32Array.from({ length: n }, () => rng.normal());
      const got = await onBoth(() =>
        tf.tidy(() => {
          const [xt, wt] = [x, w].map((v) => tf.tensor(v, shape));
          const g = tf.tensor1d(gamma);
          const f = (a: tf.Tensor) => tf.sum(tf.mul(rmsNorm(a, g, 1e-6), wt!));
          return [rmsNorm(xt!, g, 1e-6), tf.grad(f)(xt!)].map((t) => t.dataSync().slice());
        }),
      );
      for (let i = 0; i < 2; i++)
        expect(maxRelErr(got.wasm[i]!, got.cpu[i]!)).toBeLessThan(TOLERANCE);
    },
  );
});

describe('rotary: wasm SIMD against the cpu kernel, bit for bit', () => {
  const rng = new Rng(19);
  it.each([
    [[2, 3, 5, 6], 2],
    [[1, 2, 3, 16], 1],
    [[2, 2, 9, 64], 2],
  ] as [number[], number][])(
    'x %j, tables for %i rows, value and gradient',
    async (shape, rows) => {
      const [, , T, D] = shape as [number, number, number, number];
      const n = shape.reduce((a, b) => a * b, 1);
      const randn = (k: number) => Float32Array.from({ length: k }, () => rng.normal());
      const [x, w, c, s] = [randn(n), randn(n), randn(rows * T * D), randn(rows * T * D)];
      const got = await onBoth(() =>
        tf.tidy(() => {
          const [cos, sin] = [c, s].map((v) =>
            tf.tensor4d(v, [rows, 1, T, D] as [number, number, number, number]),
          );
          const [xt, wt] = [x, w].map((v) =>
            tf.tensor4d(v, shape as [number, number, number, number]),
          );
          const f = (a: tf.Tensor) => tf.sum(tf.mul(rotary(a as tf.Tensor4D, cos!, sin!), wt!));
          return [rotary(xt!, cos!, sin!), tf.grad(f)(xt!)].map((t) => Array.from(t.dataSync()));
        }),
      );
      expect(got.wasm).toEqual(got.cpu);
    },
  );
});

describe('the SIMD step kernels on wasm', () => {
  it('load over the wasm heap and are what the registered kernels run', () => {
    const kernels = simdKernels(tf.backend() as unknown as BackendWasm);
    expect(typeof kernels?.softmaxXent).toBe('function');
    expect(typeof kernels?.geluNewGrad).toBe('function');
    expect(typeof kernels?.layerNormGrad).toBe('function');
    expect(typeof kernels?.swigluGrad).toBe('function');
    expect(typeof kernels?.rmsNormGrad).toBe('function');
    expect(typeof kernels?.rotary).toBe('function');
    const names = [SOFTMAX_XENT, SOFTMAX_XENT_GRAD, GELU_NEW, GELU_NEW_GRAD, SWIGLU, SWIGLU_GRAD];
    for (const name of [...names, LAYER_NORM, LAYER_NORM_GRAD, RMS_NORM, RMS_NORM_GRAD, ROTARY]) {
      const config = tf.getKernel(name, 'wasm') as HostKernelConfig | undefined;
      expect(config?.host, name).toBeTypeOf('function');
      expect(config?.kernelFunc).not.toBe(config?.host);
    }
  });
});

// [N, V, logit scale, share of +-80 logits]
const XENT_SHAPES: [number, number, number, number][] = [
  [1, 1, 3, 0],
  [1, 257, 3, 0],
  [7, 3, 3, 0],
  [33, 257, 3, 0],
  [9, 4099, 3, 0],
  [5, 4096, 30, 0],
  [12, 257, 3, 0.05],
  [6, 4099, 1, 0.5],
];

describe('softmax cross-entropy: wasm SIMD against the cpu kernel', () => {
  it.each(XENT_SHAPES)('N=%i, V=%i, scale %i, %f of logits at +-80', async (N, V, scale, ext) => {
    const p = problem(N, V, N * 7 + V, scale, ext);
    const got = await onBoth(() => measure(p));
    expect(maxRelErr(got.wasm.nll, got.cpu.nll)).toBeLessThan(TOLERANCE);
    expect(maxRelErr(got.wasm.grad, got.cpu.grad)).toBeLessThan(TOLERANCE);
    expect(maxRelErr(got.wasm.gradMean, got.cpu.gradMean)).toBeLessThan(TOLERANCE);
    p.labels.forEach((l, n) => {
      if (l >= 0) return;
      expect(got.wasm.nll[n]).toBe(0);
      expect(got.wasm.grad.subarray(n * V, (n + 1) * V).every((g) => g === 0)).toBe(true);
    });
  });

  it('a row whose logits are all -Infinity but the label gives a finite loss of 0', async () => {
    const p = problem(2, 9, 1, 1);
    p.logits.fill(-Infinity);
    p.labels.set([4, 0]);
    p.logits[4] = 5;
    p.logits[9] = -80;
    const got = await onBoth(() => measure(p));
    expect(Array.from(got.wasm.nll)).toEqual([0, 0]);
    expect(maxRelErr(got.wasm.grad, got.cpu.grad)).toBe(0);
  });

  it('a NaN logit makes its row NaN, as on cpu, and leaves the other rows alone', async () => {
    const p = problem(3, 10, 2, 1);
    p.labels.set([1, 2, 3]);
    p.logits[5] = NaN; // row 0, in the vector part
    p.logits[29] = NaN; // row 2, in the tail (10 = 2 x 4 + 2)
    const got = await onBoth(() => measure(p));
    for (const b of ['cpu', 'wasm'] as const) {
      expect(got[b].nll[0]).toBeNaN();
      expect(got[b].nll[2]).toBeNaN();
    }
    expect(maxRelErr([got.wasm.nll[1]!], [got.cpu.nll[1]!])).toBeLessThan(TOLERANCE);
  });

  it('names a label outside the vocabulary in the gradient too', () => {
    const run = (name: string, inputs: tf.NamedTensorMap) =>
      tf.tidy(() => tf.engine().runKernel(name, inputs));
    const logits = tf.zeros([2, 5]);
    const labels = tf.tensor1d([1, 7], 'int32');
    const lse = tf.zeros([2]);
    expect(() => run(SOFTMAX_XENT_GRAD, { logits, labels, lse, dnll: lse })).toThrow(
      /LoraFleetSoftmaxXentGrad: label 7 of row 1 is outside the vocabulary \(0..4\)/,
    );
    tf.dispose([logits, labels, lse]);
  });
});

describe('gelu_new: wasm SIMD against the cpu kernel', () => {
  const rng = new Rng(11);
  // Sizes 1, 3 and 257 (tails), 4099; scale 3, and 30 (saturation of both sides).
  it.each([
    [[1], 3],
    [[3], 3],
    [[257], 3],
    [[4099], 3],
    [[7, 37], 30],
  ] as [number[], number][])('shape %j, scale %i, value and gradient', async (shape, scale) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const x = Float32Array.from({ length: n }, () => rng.normal() * scale);
    x[0] = 0;
    const w = Float32Array.from({ length: n }, () => rng.normal());
    const got = await onBoth(() =>
      tf.tidy(() => {
        const xt = tf.tensor(x, shape);
        const wt = tf.tensor(w, shape);
        const grad = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(geluNew(v), wt)))(xt);
        return [geluNew(xt).dataSync().slice(), grad.dataSync().slice()];
      }),
    );
    expect(maxRelErr(got.wasm[0]!, got.cpu[0]!)).toBeLessThan(TOLERANCE);
    expect(maxRelErr(got.wasm[1]!, got.cpu[1]!)).toBeLessThan(TOLERANCE);
  });
});

describe('LayerNorm: wasm SIMD against the cpu kernel', () => {
  const rng = new Rng(13);
  const randn = (n: number, scale = 1, shift = 0) =>
    Float32Array.from({ length: n }, () => shift + rng.normal() * scale);
  // C = 1, 3 (tails only), 37, 256 (vector only), 259; one row; rows offset by 5 (a mean far from 0).
  it.each([
    [[1, 1], 0],
    [[4, 3], 0],
    [[2, 9, 37], 0],
    [[1, 256], 0],
    [[17, 259], 5],
    [[64, 256], 0],
  ] as [number[], number][])(
    'shape %j (x shifted by %i), value and gradients',
    async (shape, shift) => {
      const C = shape.at(-1)!;
      const n = shape.reduce((a, b) => a * b, 1);
      const x = randn(n, 2, shift);
      const gamma = randn(C);
      const beta = randn(C);
      const w = randn(n);
      const got = await onBoth(() =>
        tf.tidy(() => {
          const [xt, gt, bt] = [tf.tensor(x, shape), tf.tensor(gamma), tf.tensor(beta)];
          const wt = tf.tensor(w, shape);
          const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => layerNorm(a, g, b, 1e-5);
          const grads = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
            tf.sum(tf.mul(f(a, g, b), wt)),
          )([xt, gt, bt]);
          return [f(xt, gt, bt), ...grads].map((t) => t.dataSync().slice());
        }),
      );
      got.cpu.forEach((want, i) => expect(maxRelErr(got.wasm[i]!, want)).toBeLessThan(TOLERANCE));
    },
  );
});
