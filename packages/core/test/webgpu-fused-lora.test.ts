// The fused LoRA linear (src/lora/fused-linear.ts: y = x op(W) + b + s (x A^T) B^T
// and its backward in four dispatches of the project's WGSL kernel), executed
// on webgpu (SwiftShader where there is no GPU), against the unfused path on
// webgpu (tfjs ops over the same kernels) and against the cpu backend: the
// output, dx, dA and dB, for both weight orientations, with and without bias,
// with dropout, batch 1, odd sizes, and a base stored as bf16 halves.
import { describe, expect, it } from 'vitest';
import {
  type BackendName,
  LORAFLEET_MATMUL,
  LoraLinear,
  Rng,
  fusedLoraAvailable,
  tf,
  useBackend,
  useFusedLoraLinear,
} from '../src/index.js';
import { webGpuSuite } from './webgpu-suite.js';

interface Setup {
  /** Rows of x (batch * tokens). */
  n: number;
  inF: number;
  outF: number;
  r: number;
  fanInFanOut: boolean;
  bias: boolean;
  dropout: number;
  half: boolean;
}

function values(size: number, seed: number, scale = 1): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: size }, () => rng.normal() * scale);
}

interface Outcome {
  y: Float32Array;
  dx: Float32Array;
  dA: Float32Array;
  dB: Float32Array;
  kernels: string[];
}

/** Builds the layer on the active backend, runs forward + backward, reads everything. */
async function runLayer(s: Setup): Promise<Outcome> {
  const weightShape = s.fanInFanOut ? [s.inF, s.outF] : [s.outF, s.inF];
  const weight = tf.tensor2d(values(s.inF * s.outF, 1), weightShape as [number, number]);
  const bias = s.bias ? tf.tensor1d(values(s.outF, 2)) : null;
  const layer = new LoraLinear({
    name: 'h.0.attn.c_attn',
    weight,
    bias,
    fanInFanOut: s.fanInFanOut,
  });
  tf.dispose([weight, bias ?? []]);
  const settings = { r: s.r, alpha: 2 * s.r, dropout: s.dropout, rslora: false };
  layer.loadAdapter('default', settings, values(s.r * s.inF, 3, 0.3), values(s.outF * s.r, 4, 0.3));
  if (s.half) await layer.storeBaseAs('bf16');
  const x = tf.variable(tf.tensor2d(values(s.n * s.inF, 5), [s.n, s.inF]), true);
  const probe = tf.tensor2d(values(s.n * s.outF, 6), [s.n, s.outF]); // loss = sum(y * probe)
  const adapter = layer.activeAdapter!;
  let y!: tf.Tensor;
  let grads!: tf.NamedTensorMap;
  const profile = await tf.profile(() => {
    const result = tf.variableGrads(() => {
      y = tf.keep(layer.forward(x, { training: s.dropout > 0, dropoutSeed: 9 }));
      return tf.sum(tf.mul(y, probe));
    }, [x, adapter.a, adapter.b]);
    result.value.dispose();
    grads = result.grads;
    Object.values(grads).forEach((g) => tf.keep(g));
    return [];
  });
  const read = async (t: tf.Tensor) => (await t.data()) as Float32Array;
  const out: Outcome = {
    y: await read(y),
    dx: await read(grads[x.name]!),
    dA: await read(grads[adapter.a.name]!),
    dB: await read(grads[adapter.b.name]!),
    kernels: profile.kernelNames,
  };
  tf.dispose([y, x, probe, ...Object.values(grads)]);
  layer.dispose();
  return out;
}

async function on(backend: BackendName, fused: boolean, s: Setup): Promise<Outcome> {
  await useBackend(backend);
  if (backend === 'webgpu') tf.env().set('WEBGPU_CPU_FORWARD', false);
  useFusedLoraLinear(fused);
  try {
    if (backend === 'webgpu') expect(fusedLoraAvailable()).toBe(fused);
    return await runLayer(s);
  } finally {
    useFusedLoraLinear(true);
  }
}

function maxDiff(x: Float32Array, y: Float32Array): number {
  expect(x.length).toBe(y.length);
  let worst = 0;
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  return worst;
}

function expectClose(got: Outcome, want: Outcome, what: string): void {
  for (const key of ['y', 'dx', 'dA', 'dB'] as const) {
    expect(maxDiff(got[key], want[key]), `${what}: ${key}`).toBeLessThan(2e-4);
  }
}

const BASE: Setup = {
  n: 13,
  inF: 21,
  outF: 30,
  r: 4,
  fanInFanOut: true,
  bias: true,
  dropout: 0,
  half: false,
};

const SETUPS: [string, Setup][] = [
  ['Conv1D weight [in, out] with bias (GPT-2)', BASE],
  [
    'Linear weight [out, in] without bias, batch 1',
    { ...BASE, n: 1, fanInFanOut: false, bias: false },
  ],
  ['dropout 0.25 (x and dropout(x) get separate gradients)', { ...BASE, dropout: 0.25, n: 17 }],
  [
    'base stored as bf16 halves, sizes multiples of 4',
    { ...BASE, n: 16, inF: 32, outF: 64, r: 8, half: true },
  ],
];

webGpuSuite();

describe('fused LoRA linear on webgpu equals the unfused path and cpu', () => {
  for (const [what, setup] of SETUPS) {
    it(
      what,
      async () => {
        const fused = await on('webgpu', true, setup);
        const unfused = await on('webgpu', false, setup);
        const cpu = await on('cpu', false, setup);
        // The fused path ran (its kernel, no BatchMatMul) and the unfused did not.
        expect(fused.kernels).toContain(LORAFLEET_MATMUL);
        expect(fused.kernels).not.toContain('BatchMatMul');
        expect(unfused.kernels).not.toContain(LORAFLEET_MATMUL);
        expectClose(fused, unfused, `${what}, fused vs unfused webgpu`);
        expectClose(fused, cpu, `${what}, fused webgpu vs cpu`);
        expect(maxDiff(fused.dA, new Float32Array(fused.dA.length))).toBeGreaterThan(1e-3);
        expect(maxDiff(fused.dB, new Float32Array(fused.dB.length))).toBeGreaterThan(1e-3);
      },
      300_000,
    );
  }
});
