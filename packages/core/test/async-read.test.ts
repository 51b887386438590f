// The asynchronous reads that the webgpu backend needs return exactly what the
// synchronous ones return on cpu and wasm, and leak nothing.
import { describe, expect, it } from 'vitest';
import {
  TrainableParameters,
  lossAndGradsAsync,
  readAsync,
  readParametersAsync,
  tf,
  useBackend,
} from '../src/index.js';
import { randn, twoLayers } from './two-lora-layers.js';

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`asynchronous reads on ${backend}`, () => {
    it('lossAndGradsAsync equals lossAndGrads bit for bit', async () => {
      await useBackend(backend);
      const layers = twoLayers();
      const params = TrainableParameters.fromLoraLayers(layers);
      const x = randn([5, 8], 3);
      const loss = () =>
        tf.sum(tf.square(layers[1]!.forward(tf.tanh(layers[0]!.forward(x))))) as tf.Scalar;
      const sync = params.lossAndGrads(loss);
      const before = tf.memory().numTensors;
      const async = await lossAndGradsAsync(params, loss);
      expect(tf.memory().numTensors).toBe(before);
      expect(async.loss).toBe(sync.loss);
      expect(Array.from(async.grads)).toEqual(Array.from(sync.grads));
      expect(Array.from(await readParametersAsync(params))).toEqual(Array.from(params.read()));
      x.dispose();
      layers.forEach((l) => l.dispose());
    });

    it('readAsync concatenates, and hands out a copy of a single tensor', async () => {
      await useBackend(backend);
      const a = tf.tensor([
        [1, 2],
        [3, 4],
      ]);
      const b = tf.tensor([5, 6], [2], 'int32');
      expect(Array.from(await readAsync([a, b]))).toEqual([1, 2, 3, 4, 5, 6]);
      expect((await readAsync([])).length).toBe(0);
      const v = tf.variable(tf.tensor([7, 8]));
      const values = await readAsync([v]);
      values[0] = 0;
      expect(Array.from(v.dataSync())).toEqual([7, 8]);
      tf.dispose([a, b, v]);
    });
  });
}
