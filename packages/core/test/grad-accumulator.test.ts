// Gradients summed on the device across micro-batches (GradientAccumulator)
// are the very bits of the read-back gradients summed on the CPU, on every
// backend (webgpu on SwiftShader where there is no GPU), and a step of
// several micro-batches reads the device once: the fused buffer, at the end.
import { afterAll, describe, expect, it } from 'vitest';
import {
  GradientAccumulator,
  TrainableParameters,
  lossAndGradsAsync,
  releaseWebGpu,
  settleDevice,
  tf,
  useBackend,
  webGpuErrors,
} from '../src/index.js';
import { randn, twoLayers } from './two-lora-layers.js';
import { testBackends } from '../src/testing/index.js';

/** Reads of device memory while `fn` runs (tfjs's backend.read, what data() calls). */
async function countingReads<T>(fn: () => Promise<T>): Promise<{ value: T; reads: number }> {
  const backend = tf.backend() as unknown as { read: (...args: unknown[]) => unknown };
  const read = backend.read;
  let reads = 0;
  backend.read = (...args: unknown[]) => {
    reads++;
    return read.apply(backend, args);
  };
  try {
    return { value: await fn(), reads };
  } finally {
    backend.read = read;
  }
}

afterAll(async () => {
  await useBackend('cpu');
  releaseWebGpu();
});

for (const backend of testBackends()) {
  describe(`GradientAccumulator on ${backend}`, () => {
    it('sums 3 micro-batches to the bits of the CPU sum of their read-back gradients, with one read', async () => {
      await useBackend(backend);
      if (backend === 'webgpu') tf.env().set('WEBGPU_CPU_FORWARD', false);
      const layers = twoLayers();
      const params = TrainableParameters.fromLoraLayers(layers);
      const inputs = [0, 1, 2].map((m) => randn([5 + m, 8], 3 + m, 2));
      const loss = (x: tf.Tensor) => () =>
        tf.sum(tf.square(layers[1]!.forward(tf.tanh(layers[0]!.forward(x))))) as tf.Scalar;

      const want = new Float32Array(params.size);
      let wantLoss = 0;
      for (const x of inputs) {
        const one = await lossAndGradsAsync(params, loss(x));
        for (let j = 0; j < want.length; j++) want[j] = want[j]! + one.grads[j]!;
        wantLoss = Math.fround(wantLoss + one.loss);
      }

      const before = tf.memory().numTensors;
      const sums = new GradientAccumulator(params);
      const { value: got, reads } = await countingReads(async () => {
        for (const x of inputs) {
          sums.add(loss(x));
          await settleDevice();
        }
        return sums.take();
      });
      expect(tf.memory().numTensors).toBe(before);
      expect(reads).toBe(1);
      expect(got.loss).toBe(wantLoss);
      expect(Array.from(got.grads)).toEqual(Array.from(want));
      expect(want.some((g) => Math.abs(g) > 1e-2)).toBe(true);
      // Empty again: nothing added since take() reads as zeros.
      expect((await sums.take()).grads.every((g) => g === 0)).toBe(true);

      tf.dispose(inputs);
      layers.forEach((l) => l.dispose());
      if (backend === 'webgpu') {
        tf.env().set('WEBGPU_CPU_FORWARD', true);
        expect(webGpuErrors()).toEqual([]);
      }
    }, 120_000);

    it("sums each micro-batch's statistics beside its loss, in the same read, and refuses a wrong count", async () => {
      await useBackend(backend);
      if (backend === 'webgpu') tf.env().set('WEBGPU_CPU_FORWARD', false);
      const layers = twoLayers();
      const params = TrainableParameters.fromLoraLayers(layers);
      const inputs = [0, 1].map((m) => randn([4 + m, 8], 7 + m, 2));
      const sums = new GradientAccumulator(params, 2);
      const plain = new GradientAccumulator(params);
      const want = [0, 0];
      const { value: got, reads } = await countingReads(async () => {
        for (const [m, x] of inputs.entries()) {
          let kept: tf.Tensor1D | null = null;
          const loss = () => {
            const y = layers[1]!.forward(tf.tanh(layers[0]!.forward(x)));
            kept = tf.keep(tf.stack([tf.max(y), tf.scalar(m + 1)]) as tf.Tensor1D);
            return tf.sum(tf.square(y)) as tf.Scalar;
          };
          sums.add(loss, () => kept);
          const [max, count] = await kept!.data();
          want[0] = Math.fround(want[0]! + max!);
          want[1] = want[1]! + count!;
          tf.dispose(kept!);
          plain.add(loss); // the same batch without statistics
          tf.dispose(kept!);
        }
        return sums.take();
      });
      expect(reads).toBe(1 + inputs.length); // the fused buffer, and this test's own reads of each batch
      expect(Array.from(got.stats)).toEqual(want);
      const without = await plain.take();
      expect(Array.from(got.grads)).toEqual(Array.from(without.grads));
      expect(got.loss).toBe(without.loss);
      expect(without.stats.length).toBe(0);
      const x = inputs[0]!;
      const loss = () => tf.sum(layers[1]!.forward(tf.tanh(layers[0]!.forward(x)))) as tf.Scalar;
      expect(() => sums.add(loss, () => tf.zeros([3]))).toThrow(
        'a batch brought 3 statistics, not 2',
      );
      tf.dispose(inputs);
      layers.forEach((l) => l.dispose());
      if (backend === 'webgpu') {
        tf.env().set('WEBGPU_CPU_FORWARD', true);
        expect(webGpuErrors()).toEqual([]);
      }
    }, 120_000);
  });
}
