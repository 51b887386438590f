// The engine's clone of tensors saved for backward, as a shared reference
// (backend/saved-clone.ts) instead of tfjs's Identity kernel run: the same
// gradients to the bit, no Identity kernels in the step, no tensor or buffer
// left behind, and higher-order gradients still work through its tape node.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  TrainableParameters,
  installSharedClone,
  lossAndGradsAsync,
  releaseWebGpu,
  tf,
  uninstallSharedClone,
  useBackend,
  webGpuErrors,
} from '../src/index.js';
import { testBackends } from '../src/testing/index.js';
import { randn, twoLayers } from './two-lora-layers.js';

afterEach(() => installSharedClone(tf)); // the default, whatever a test switched
afterAll(async () => {
  await useBackend('cpu');
  releaseWebGpu();
});

const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

for (const backend of testBackends()) {
  describe(`the shared clone on ${backend}`, () => {
    it('gives the bits of tfjs clone, runs no Identity kernel, and leaves nothing behind', async () => {
      await useBackend(backend);
      const layers = twoLayers();
      const params = TrainableParameters.fromLoraLayers(layers);
      const x = randn([7, 8], 5, 2);
      const loss = () =>
        tf.sum(
          tf.softmax(tf.square(layers[1]!.forward(tf.tanh(layers[0]!.forward(x))))),
        ) as tf.Scalar;
      const run = async (shared: boolean) => {
        if (shared) installSharedClone(tf);
        else uninstallSharedClone(tf);
        const tensors = tf.memory().numTensors;
        const buffers = tf.engine().backend.numDataIds();
        const step = await lossAndGradsAsync(params, loss);
        const identities = (await tf.profile(() => lossAndGradsAsync(params, loss))).kernels
          .map((k) => k.name)
          .filter((name) => name === 'Identity').length;
        expect(tf.memory().numTensors).toBe(tensors);
        expect(tf.engine().backend.numDataIds()).toBe(buffers);
        return { ...step, identities };
      };
      const tfjs = await run(false);
      const shared = await run(true);
      expect(tfjs.identities).toBeGreaterThan(5); // the clones the shared one saves
      expect(shared.identities).toBe(0);
      expect(bits(shared.grads)).toEqual(bits(tfjs.grads));
      expect(shared.loss).toBe(tfjs.loss);
      x.dispose();
      for (const layer of layers) layer.dispose();
      if (backend === 'webgpu') expect(await webGpuErrors()).toEqual([]);
    });

    it('keeps higher-order gradients: d2/dx2 of x^3 is 6x', async () => {
      await useBackend(backend);
      installSharedClone(tf);
      const second = tf.grad(tf.grad((x: tf.Tensor) => tf.pow(x, 3)));
      const x = tf.tensor1d([2, -1.5]);
      const got = Array.from(await second(x).data());
      expect(got[0]).toBeCloseTo(12, 4); // webgpu's pow goes through exp and log
      expect(got[1]).toBeCloseTo(-9, 4);
      tf.dispose(x);
    });
  });
}
