// The wasm BatchMatMul wrapper (explicit transposes) must give the cpu
// backend's products for every transpose combination, batched or not.
import { describe, expect, it } from 'vitest';
import { Rng, tf, useBackend } from '../src/index.js';

function values(size: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: size }, () => rng.normal());
}

async function product(
  backend: 'cpu' | 'wasm',
  aShape: number[],
  bShape: number[],
  transposeA: boolean,
  transposeB: boolean,
): Promise<Float32Array> {
  await useBackend(backend);
  const size = (s: number[]) => s.reduce((x, y) => x * y, 1);
  return tf.tidy(() => {
    const a = tf.tensor(values(size(aShape), 1), aShape);
    const b = tf.tensor(values(size(bShape), 2), bShape);
    return tf.matMul(a, b, transposeA, transposeB).dataSync() as Float32Array;
  });
}

describe('wasm BatchMatMul with transpose flags', () => {
  const cases: [number[], number[], boolean, boolean][] = [
    [[5, 7], [7, 3], false, false],
    [[5, 7], [3, 7], false, true],
    [[7, 5], [7, 3], true, false],
    [[7, 5], [3, 7], true, true],
    [[2, 3, 4, 6], [2, 3, 5, 6], false, true],
    [[2, 3, 6, 4], [2, 3, 6, 5], true, false],
  ];
  for (const [aShape, bShape, ta, tb] of cases) {
    it(`[${aShape}]${ta ? '^T' : ''} x [${bShape}]${tb ? '^T' : ''} equals cpu`, async () => {
      const want = await product('cpu', aShape, bShape, ta, tb);
      const before = (await useBackend('wasm'), tf.memory().numTensors);
      const got = await product('wasm', aShape, bShape, ta, tb);
      expect(tf.memory().numTensors).toBe(before);
      expect(got.length).toBe(want.length);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
      expect(worst).toBeLessThan(1e-4);
    });
  }

  it('gradients through transposed products match cpu', async () => {
    const grads = async (backend: 'cpu' | 'wasm') => {
      await useBackend(backend);
      return tf.tidy(() => {
        const a = tf.tensor(values(12, 3), [3, 4]);
        const b = tf.tensor(values(20, 4), [5, 4]);
        const [da, db] = tf.grads((x: tf.Tensor, y: tf.Tensor) =>
          tf.sum(tf.square(tf.matMul(x, y, false, true))),
        )([a, b]);
        return [...da!.dataSync(), ...db!.dataSync()];
      });
    };
    const [want, got] = [await grads('cpu'), await grads('wasm')];
    want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, 3));
  });
});
