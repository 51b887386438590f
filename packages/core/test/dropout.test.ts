// Dropout with counter-based masks (ops/dropout.ts): the kept share and the
// scale, masks of different seeds independent, the same seed the same mask,
// the gradient through the same mask, and the same bits on cpu, wasm and
// webgpu (real WGSL execution: SwiftShader without a GPU).
import { afterAll, describe, expect, it } from 'vitest';
import {
  type BackendName,
  DROPOUT,
  dropoutKeeps,
  dropoutKeys,
  dropoutMask,
  lowbias32,
  seededDropout,
  tf,
  useBackend,
} from '../src/index.js';
import { webGpuSuite } from './webgpu-suite.js';

const SIZE = 200_003;

describe('seeded dropout masks', () => {
  it('keep 1 - rate of the elements, scaled by 1 / (1 - rate), the same for the same seed', () => {
    for (const rate of [0.05, 0.1, 0.5]) {
      const keys = dropoutKeys(12345, rate);
      const mask = dropoutMask(SIZE, keys);
      const kept = mask.filter((v) => v !== 0);
      // Binomial: standard deviation sqrt(p (1 - p) / n) < 0.0012; 5 of them.
      expect(Math.abs(kept.length / SIZE - (1 - rate))).toBeLessThan(0.006);
      expect(new Set(kept)).toEqual(new Set([Math.fround(1 / (1 - rate))]));
      expect(dropoutMask(SIZE, dropoutKeys(12345, rate))).toEqual(mask);
    }
  });

  it('masks of different seeds (neighbours, beyond 2^32, negative) are independent', () => {
    const rate = 0.3;
    const seeds = [0, 1, 2, 2 ** 32, 2 ** 32 + 1, -1, 4 * 1009 + 3, 2 ** 52 + 7];
    const masks = seeds.map((s) => dropoutMask(SIZE, dropoutKeys(s, rate)));
    for (let a = 0; a < seeds.length; a++) {
      for (let b = a + 1; b < seeds.length; b++) {
        let both = 0;
        for (let i = 0; i < SIZE; i++) if (masks[a]![i] !== 0 && masks[b]![i] !== 0) both++;
        // Independent: both kept with probability 0.49 (a shared mask would give 0.7).
        expect(Math.abs(both / SIZE - 0.49), `seeds ${seeds[a]} and ${seeds[b]}`).toBeLessThan(
          0.006,
        );
      }
    }
  });

  it('lowbias32 maps u32 to u32; bad rates and seeds are refused', () => {
    expect(lowbias32(0)).toBe(0);
    expect(lowbias32(0xffffffff)).toBeLessThan(2 ** 32);
    expect(new Set([1, 2, 3, 4, 2 ** 31].map(lowbias32)).size).toBe(5);
    expect(() => dropoutKeys(1, 1)).toThrow(/rate must be in \[0, 1\)/);
    expect(() => dropoutKeys(1.5, 0.1)).toThrow(/seed must be an integer/);
    expect(dropoutKeeps(dropoutKeys(7, 0), 3)).toBe(true); // rate 0 keeps everything
  });
});

/** y = dropout(x) and d sum(w * y) / dx on a backend, as arrays. */
async function onBackend(backend: BackendName, shape: number[], rate: number, seed: number) {
  await useBackend(backend);
  const size = shape.reduce((a, b) => a * b, 1);
  const x = tf.tensor(
    Float32Array.from({ length: size }, (_, i) => Math.sin(i) + 0.5),
    shape,
  );
  const w = tf.tensor(
    Float32Array.from({ length: size }, (_, i) => Math.cos(3 * i)),
    shape,
  );
  const { value, grads } = tf.valueAndGrads((t: tf.Tensor) =>
    tf.sum(tf.mul(w, seededDropout(t, rate, seed))),
  )([x]);
  const y = seededDropout(x, rate, seed);
  const out = {
    y: (await y.data()) as Float32Array,
    dx: (await grads[0]!.data()) as Float32Array,
    loss: (await value.data())[0]!,
    w: (await w.data()) as Float32Array,
  };
  tf.dispose([x, w, value, y, ...grads]);
  return out;
}

describe('seeded dropout on every backend', () => {
  afterAll(async () => {
    await useBackend('cpu');
  });

  it('cpu: y = x * mask and dx = w * mask, where mask is dropoutMask', async () => {
    const [shape, rate, seed] = [[7, 13], 0.25, 99];
    const { y, dx, w } = await onBackend('cpu', shape, rate, seed);
    const mask = dropoutMask(7 * 13, dropoutKeys(seed, rate));
    const x = Float32Array.from({ length: 91 }, (_, i) => Math.sin(i) + 0.5);
    expect(y).toEqual(x.map((v, i) => Math.fround(v * mask[i]!)));
    expect(dx).toEqual(w.map((v, i) => Math.fround(v * mask[i]!)));
    expect(mask.some((v) => v === 0) && mask.some((v) => v !== 0)).toBe(true); // not vacuous
  });

  it('wasm equals cpu bit for bit', async () => {
    const cpu = await onBackend('cpu', [5, 3, 11], 0.1, 2 ** 33 + 5);
    const wasm = await onBackend('wasm', [5, 3, 11], 0.1, 2 ** 33 + 5);
    expect(wasm.y).toEqual(cpu.y);
    expect(wasm.dx).toEqual(cpu.dx);
  });
});

describe('seeded dropout on webgpu draws the mask in the kernel', () => {
  webGpuSuite();

  it('equals cpu bit for bit, forward and gradient, and runs LoraFleetDropout', async () => {
    for (const [shape, rate, seed] of [
      [[3, 5, 67], 0.1, 11],
      [[1, 1], 0.5, -3],
      [[4096 + 3], 0.05, 2 ** 40],
    ] as [number[], number, number][]) {
      const cpu = await onBackend('cpu', shape, rate, seed);
      const gpu = await onBackend('webgpu', shape, rate, seed);
      expect(gpu.y, `${shape} ${rate} ${seed}`).toEqual(cpu.y);
      expect(gpu.dx).toEqual(cpu.dx);
    }
    const x = tf.ones([8, 8]);
    const { kernelNames } = await tf.profile(() => seededDropout(x, 0.5, 1));
    expect(kernelNames).toContain(DROPOUT);
    x.dispose();
  }, 120_000);
});
