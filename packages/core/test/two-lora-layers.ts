// The small LoRA fixture of the gradient-read tests (async-read, grad-accumulator):
// two stacked LoraLinear layers with B != 0, so that both A and B get gradients.
import { LoraLinear, Rng, tf } from '../src/index.js';

/** A tensor of N(0, scale^2) values, from `seed`. */
export function randn(shape: number[], seed: number, scale = 1): tf.Tensor {
  const rng = new Rng(seed);
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = rng.normal() * scale;
  return tf.tensor(data, shape);
}

/** [., 8] -> [., 6] -> [., 5], r = 2, with random B. */
export function twoLayers(): LoraLinear[] {
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
