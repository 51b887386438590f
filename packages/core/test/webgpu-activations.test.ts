// The fused activations (src/backend/webgpu-kernels/activations.ts) executed
// on webgpu (SwiftShader where there is no GPU): gelu_new, SwiGLU and GeGLU, the
// output and the gradients, against tfjs's composed ops on webgpu and on the
// cpu backend; sizes below and above a workgroup, odd sizes, one element,
// and inputs large enough to saturate tanh and sigmoid.
import { describe, expect, it } from 'vitest';
import {
  type BackendName,
  GEGLU_GRAD,
  GELU_NEW_GRAD,
  Rng,
  SWIGLU_GRAD,
  gated,
  gatedComposed,
  fusedActivationsAvailable,
  selectWebGpuMatMul,
  geluNew,
  geluNewComposed,
  swiglu,
  swigluComposed,
  tf,
  useBackend,
  useFusedActivations,
} from '../src/index.js';
import { webGpuSuite } from './webgpu-suite.js';

function values(size: number, seed: number, scale: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: size }, () => rng.normal() * scale);
}

interface Outcome {
  y: Float32Array;
  grads: Float32Array[];
  kernels: string[];
}

type Activation = 'gelu_new' | 'swiglu' | 'geglu';

/** y = f(inputs), and d sum(y * probe) / d each input. */
async function run(
  backend: BackendName,
  fused: boolean,
  activation: Activation,
  shape: number[],
  scale: number,
): Promise<Outcome> {
  await useBackend(backend);
  if (backend === 'webgpu') tf.env().set('WEBGPU_CPU_FORWARD', false);
  useFusedActivations(fused);
  try {
    const size = shape.reduce((a, b) => a * b, 1);
    const arity = activation === 'gelu_new' ? 1 : 2;
    const inputs = Array.from({ length: arity }, (_, i) =>
      tf.tensor(values(size, size + i, scale), shape),
    );
    const probe = tf.tensor(values(size, 7, 1), shape);
    if (backend === 'webgpu') expect(fusedActivationsAvailable()).toBe(fused);
    const f = (...xs: tf.Tensor[]) =>
      activation === 'swiglu'
        ? (fused ? swiglu : swigluComposed)(xs[0]!, xs[1]!)
        : activation === 'geglu'
          ? (fused ? gated : gatedComposed)('gelu_tanh', xs[0]!, xs[1]!)
          : (fused ? geluNew : geluNewComposed)(xs[0]!);
    let y!: tf.Tensor;
    let grads!: tf.Tensor[];
    const profile = await tf.profile(() => {
      y = tf.keep(f(...inputs));
      grads = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), probe)))(inputs);
      return [];
    });
    const out = {
      y: (await y.data()) as Float32Array,
      grads: await Promise.all(grads.map(async (g) => (await g.data()) as Float32Array)),
      kernels: profile.kernelNames,
    };
    tf.dispose([...inputs, probe, y, ...grads]);
    return out;
  } finally {
    useFusedActivations(true);
  }
}

/** max |a - b| / (1 + |b|): absolute near zero, relative for large values. */
function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / (1 + Math.abs(b[i]!)));
  }
  return worst;
}

const CASES: [string, number[], number][] = [
  ['one element', [1], 1],
  ['[3, 67] (odd, above a workgroup)', [3, 67], 2],
  ['[2, 5, 64]', [2, 5, 64], 1],
  ['[129] of large values (tanh and sigmoid saturate)', [129], 30],
];

const FUSED_GRAD: Record<Activation, string> = {
  gelu_new: GELU_NEW_GRAD,
  swiglu: SWIGLU_GRAD,
  geglu: GEGLU_GRAD,
};

webGpuSuite();

describe('fused gelu_new, SwiGLU and GeGLU on webgpu equal tfjs composed ops (webgpu, cpu)', () => {
  for (const activation of ['gelu_new', 'swiglu', 'geglu'] as const) {
    for (const [what, shape, scale] of CASES) {
      it(`${activation}: ${what}`, async () => {
        const fused = await run('webgpu', true, activation, shape, scale);
        const stock = await run('webgpu', false, activation, shape, scale);
        const cpu = await run('cpu', false, activation, shape, scale);
        expect(fused.kernels).toContain(FUSED_GRAD[activation]);
        expect(stock.kernels).not.toContain(FUSED_GRAD[activation]);
        for (const peer of [stock, cpu]) {
          expect(maxDiff(fused.y, peer.y)).toBeLessThan(1e-5);
          fused.grads.forEach((g, i) => expect(maxDiff(g, peer.grads[i]!)).toBeLessThan(1e-5));
        }
        for (const g of fused.grads) expect(g.some((v) => Math.abs(v) > 1e-2)).toBe(true);
      }, 300_000);
    }
  }

  it('is off with the stock kernels (LORAFLEET_WEBGPU_KERNELS=stock) and on other backends', async () => {
    await useBackend('webgpu');
    selectWebGpuMatMul('stock');
    try {
      expect(fusedActivationsAvailable()).toBe(false);
      const [gate, up] = [tf.tensor(values(32, 1, 1), [4, 8]), tf.tensor(values(32, 2, 1), [4, 8])];
      const profile = await tf.profile(() => {
        const grads = tf.grads((g: tf.Tensor, u: tf.Tensor) => tf.sum(swiglu(g, u)))([gate, up]);
        tf.dispose(grads);
        return [];
      });
      expect(profile.kernelNames).not.toContain(SWIGLU_GRAD);
      expect(profile.kernelNames).toContain('Sigmoid');
      tf.dispose([gate, up]);
    } finally {
      selectWebGpuMatMul('project');
    }
    expect(fusedActivationsAvailable()).toBe(true);
    await useBackend('cpu');
    expect(fusedActivationsAvailable()).toBe(false);
  });
});
