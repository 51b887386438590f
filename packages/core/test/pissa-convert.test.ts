import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LoraLinear,
  Rng,
  exportAdapter,
  importAdapter,
  pissaToLora,
  tf,
  useBackend,
} from '../src/index.js';

function randn(shape: [number, number], seed: number, scale = 1): tf.Tensor2D {
  const rng = new Rng(seed);
  return tf.tensor2d(
    Float32Array.from({ length: shape[0] * shape[1] }, () => rng.normal() * scale),
    shape,
  );
}

const fields = {
  targetModules: ['c_attn'],
  bias: 'none',
  initLoraWeights: 'pissa',
  baseModelNameOrPath: null,
  taskType: null,
} as const;

describe('PiSSA adapters converted for the original base', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });
  afterAll(() => tf.disposeVariables());

  for (const rslora of [false, true]) {
    it(`a trained PiSSA layer and the original base + converted adapter agree (rslora=${rslora})`, () => {
      const weight = randn([10, 12], 1); // fan_in_fan_out [in, out]
      const trained = new LoraLinear({ name: 'h.0.attn.c_attn', weight, fanInFanOut: true });
      trained.addAdapter('p', { r: 3, alpha: 6, dropout: 0, rslora }, { kind: 'pissa' }, 0);
      const adapter = trained.activeAdapter!;
      const initial = new Map([
        [
          trained.name,
          { a: adapter.a.dataSync() as Float32Array, b: adapter.b.dataSync() as Float32Array },
        ],
      ]);
      // "Training": move A and B away from their initial values.
      tf.tidy(() => {
        adapter.a.assign(tf.add(adapter.a, randn([3, 10], 2, 0.3)));
        adapter.b.assign(tf.add(adapter.b, randn([12, 3], 3, 0.3)));
      });
      const converted = pissaToLora(
        exportAdapter([trained], 'p', { ...fields, targetModules: [...fields.targetModules] }),
        initial,
      );
      expect(converted.config.r).toBe(6);
      expect(converted.config.initLoraWeights).toBe(true);

      const original = new LoraLinear({ name: 'h.0.attn.c_attn', weight, fanInFanOut: true });
      importAdapter([original], converted, 'p');
      expect(original.activeAdapter!.scaling).toBeCloseTo(adapter.scaling, 12);
      const x = randn([4, 10], 4);
      const [want, got] = [trained.forward(x), original.forward(x)];
      const gap = tf.tidy(() => tf.max(tf.abs(tf.sub(want, got))).dataSync()[0]!);
      expect(gap).toBeLessThan(1e-4);
      // Without the conversion the original base would be off by the initial s B0 A0.
      const wrong = new LoraLinear({ name: 'h.0.attn.c_attn', weight, fanInFanOut: true });
      importAdapter(
        [wrong],
        exportAdapter([trained], 'p', { ...fields, targetModules: [...fields.targetModules] }),
        'p',
      );
      const off = tf.tidy(() => tf.max(tf.abs(tf.sub(want, wrong.forward(x)))).dataSync()[0]!);
      expect(off).toBeGreaterThan(0.1);
      tf.dispose([weight, x, want, got]);
      [trained, original, wrong].forEach((l) => l.dispose());
    });
  }
});
