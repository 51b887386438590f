// The asynchronous reads that the webgpu backend needs return exactly what the
// synchronous ones return on cpu and wasm, and leak nothing.
import { describe, expect, it } from 'vitest';
import {
  LoraLinear,
  Rng,
  TrainableParameters,
  lossAndGradsAsync,
  readAsync,
  readParametersAsync,
  tf,
  useBackend,
} from '../src/index.js';

function randn(shape: number[], seed: number): tf.Tensor {
  const rng = new Rng(seed);
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = rng.normal();
  return tf.tensor(data, shape);
}

function twoLayers(): LoraLinear[] {
  const shapes = [
    [8, 6],
    [6, 5],
  ];
  return ['h.0.attn.c_attn', 'h.1.attn.c_attn'].map((name, i) => {
    const weight = randn(shapes[i]!, 10 + i) as tf.Tensor2D;
    const layer = new LoraLinear({ name, weight, fanInFanOut: true });
    weight.dispose();
    layer.addAdapter(
      'default',
      { r: 2, alpha: 4, dropout: 0, rslora: false },
      { kind: 'kaiming' },
      i,
    );
    const b = layer.activeAdapter!.b;
    tf.tidy(() => b.assign(randn(b.shape, 20 + i) as tf.Tensor2D));
    return layer;
  });
}

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
