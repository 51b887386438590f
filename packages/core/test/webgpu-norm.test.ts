// The fused LayerNorm and RMSNorm (src/backend/webgpu-kernels/norm.ts)
// executed on webgpu (SwiftShader where there is no GPU), against the tfjs
// formulas the models use (packages/models: gpt2 layerNorm, llama rmsNorm) on
// webgpu and on the cpu backend: the output and d/dx, one row, widths below
// and above the workgroup size, odd widths, 3-D input.
import { describe, expect, it } from 'vitest';
import {
  type BackendName,
  NORM_GRAD,
  NORM_STATS,
  type NormKind,
  Rng,
  fusedNorm,
  fusedNormAvailable,
  tf,
  useBackend,
  useFusedNorm,
} from '../src/index.js';
import { webGpuSuite } from './webgpu-suite.js';

const EPS = 1e-5;

function values(size: number, seed: number, shift = 0): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: size }, () => rng.normal() * 2 + shift);
}

/** The models' formulas (gpt2/model.ts layerNorm, llama/model.ts rmsNorm). */
function reference(x: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D | null, kind: NormKind) {
  if (kind === 'rms') {
    const variance = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(variance, EPS))), gamma);
  }
  const centered = tf.sub(x, tf.mean(x, -1, true));
  const variance = tf.mean(tf.square(centered), -1, true);
  return tf.add(tf.mul(tf.mul(centered, tf.rsqrt(tf.add(variance, EPS))), gamma), beta!);
}

interface Outcome {
  y: Float32Array;
  dx: Float32Array;
  kernels: string[];
}

async function run(
  backend: BackendName,
  fused: boolean,
  shape: number[],
  kind: NormKind,
): Promise<Outcome> {
  await useBackend(backend);
  if (backend === 'webgpu') tf.env().set('WEBGPU_CPU_FORWARD', false);
  useFusedNorm(fused);
  try {
    const cols = shape.at(-1)!;
    const size = shape.reduce((a, b) => a * b, 1);
    const x = tf.tensor(values(size, size + cols, 3), shape);
    const gamma = tf.tensor1d(values(cols, 2));
    const beta = kind === 'layer' ? tf.tensor1d(values(cols, 3)) : null;
    const probe = tf.tensor(values(size, 4), shape); // loss = sum(y * probe)
    if (backend === 'webgpu') expect(fusedNormAvailable(gamma, beta)).toBe(fused);
    let y!: tf.Tensor;
    let dx!: tf.Tensor;
    const profile = await tf.profile(() => {
      const f = (input: tf.Tensor) =>
        fused ? fusedNorm(input, gamma, beta, EPS, kind) : reference(input, gamma, beta, kind);
      y = tf.keep(f(x));
      dx = tf.grad((input: tf.Tensor) => tf.sum(tf.mul(f(input), probe)))(x);
      return [];
    });
    const out = {
      y: (await y.data()) as Float32Array,
      dx: (await dx.data()) as Float32Array,
      kernels: profile.kernelNames,
    };
    tf.dispose([x, gamma, beta ?? [], probe, y, dx]);
    return out;
  } finally {
    useFusedNorm(true);
  }
}

function maxDiff(x: Float32Array, y: Float32Array): number {
  expect(x.length).toBe(y.length);
  let worst = 0;
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  return worst;
}

const CASES: [string, number[]][] = [
  ['one row of 7', [1, 7]],
  ['[2, 5, 300] (wider than a workgroup, odd rows)', [2, 5, 300]],
  ['[9, 64]', [9, 64]],
];

webGpuSuite();

describe('fused LayerNorm / RMSNorm on webgpu equal the tfjs formulas (webgpu, cpu)', () => {
  for (const kind of ['layer', 'rms'] as const) {
    for (const [what, shape] of CASES) {
      it(`${kind}: ${what}`, async () => {
        const fused = await run('webgpu', true, shape, kind);
        const stock = await run('webgpu', false, shape, kind);
        const cpu = await run('cpu', false, shape, kind);
        expect(fused.kernels).toContain(NORM_GRAD);
        for (const peer of [stock, cpu]) {
          expect(maxDiff(fused.y, peer.y)).toBeLessThan(1e-4);
          expect(maxDiff(fused.dx, peer.dx)).toBeLessThan(1e-4);
        }
        expect(maxDiff(fused.dx, new Float32Array(fused.dx.length))).toBeGreaterThan(1e-2);
      }, 300_000);
    }
  }

  // The hand-scheduled step's residual add folded into the norm's backward: dx + r in one pass.
  it('NORM_GRAD with a residual r gives dx + r, and checks its shape', async () => {
    await useBackend('webgpu');
    for (const kind of ['layer', 'rms'] as const) {
      const [n, c] = [5, 300];
      const x = tf.tensor2d(values(n * c, 11, 3), [n, c]);
      const gamma = tf.tensor1d(values(c, 12));
      const dy = tf.tensor2d(values(n * c, 13), [n, c]);
      const r = tf.tensor2d(values(n * c, 14), [n, c]);
      const stats = tf
        .engine()
        .runKernel(NORM_STATS, { x }, { kind, eps: EPS } as never) as tf.Tensor;
      const grad = (extra: Record<string, tf.Tensor>) =>
        tf
          .engine()
          .runKernel(NORM_GRAD, { x, stats, gamma, dy, ...extra }, { kind } as never) as tf.Tensor;
      const [plain, folded] = [grad({}), grad({ r })];
      const want = tf.add(plain, r);
      const [got, expected] = [
        (await folded.data()) as Float32Array,
        (await want.data()) as Float32Array,
      ];
      expect(maxDiff(got, expected)).toBeLessThan(1e-5);
      expect(maxDiff(got, (await plain.data()) as Float32Array)).toBeGreaterThan(1);
      const wrong = tf.zeros([n, c - 1]);
      expect(() => grad({ r: wrong })).toThrow(/the residual r must be \[5, 300\]/);
      tf.dispose([x, gamma, dy, r, stats, plain, folded, want, wrong]);
    }
  });

  it('is not used for a trained gamma (it computes no dgamma)', () => {
    const gamma = tf.variable(tf.ones([4]), true);
    expect(fusedNormAvailable(gamma)).toBe(false);
    gamma.dispose();
  });
});
