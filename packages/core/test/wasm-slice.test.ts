// wasm's Slice and SplitV over heap views (src/backend/wasm-slice.ts) against
// the cpu backend: every rank from 1 to 5 (tfjs refuses to slice a scalar), slices along each axis and across
// several, whole and empty ones, float32, int32 and bool, and the gradient of
// a split (which tfjs computes with Concat and Slice).
import { beforeAll, describe, expect, it } from 'vitest';
import { copySlice } from '../src/backend/wasm-slice.js';
import { tf } from '../src/backend/tf.js';
import { Rng } from '../src/random.js';

type Backend = 'cpu' | 'wasm';
const rng = new Rng(11);

async function on<T>(backend: Backend, f: () => T): Promise<T> {
  await tf.setBackend(backend);
  await tf.ready();
  return f();
}

/** A random slice of `shape`: begin and size per axis (size 0 when `empty`). */
function randomSlice(shape: number[], empty = false): { begin: number[]; size: number[] } {
  const begin = shape.map((n) => Math.floor(rng.uniform() * n));
  const size = shape.map((n, d) =>
    empty && d === 0 ? 0 : 1 + Math.floor(rng.uniform() * (n - begin[d]!)),
  );
  return { begin, size };
}

const SHAPES: number[][] = [[7], [5, 9], [3, 4, 17], [2, 3, 5, 33], [2, 2, 3, 3, 5]];
const DTYPES = ['float32', 'int32', 'bool'] as const;

describe('Slice and SplitV on wasm read the heap, and equal cpu', () => {
  beforeAll(async () => {
    await on('wasm', () => undefined);
    expect(
      (tf.getKernel('Slice', 'wasm') as { lorafleetHeapViews?: boolean }).lorafleetHeapViews,
    ).toBe(true);
    expect(
      (tf.getKernel('SplitV', 'wasm') as { lorafleetHeapViews?: boolean }).lorafleetHeapViews,
    ).toBe(true);
  });

  it.each(DTYPES)(
    'tf.slice of %s tensors of rank 1 to 5, random, whole and empty slices',
    async (dtype) => {
      for (const shape of SHAPES) {
        const n = shape.reduce((a, b) => a * b, 1);
        const values = Array.from({ length: n }, (_, i) =>
          dtype === 'bool' ? i % 3 === 0 : i * 7 - 50,
        );
        const cases = [
          { begin: shape.map(() => 0), size: [...shape] },
          ...Array.from({ length: 8 }, () => randomSlice(shape)),
          ...[randomSlice(shape, true)],
        ];
        for (const { begin, size } of cases) {
          const run = () =>
            tf.tidy(() =>
              Array.from(tf.slice(tf.tensor(values, shape, dtype), begin, size).dataSync()),
            );
          const [cpu, wasm] = [await on('cpu', run), await on('wasm', run)];
          expect(wasm, `${dtype} [${shape}] begin [${begin}] size [${size}]`).toEqual(cpu);
        }
      }
    },
  );

  it('tf.split along every axis, even and uneven pieces, and its gradient', async () => {
    const shape = [2, 6, 3, 10];
    const values = Float32Array.from({ length: 360 }, () => rng.normal());
    const weights = Float32Array.from({ length: 360 }, () => rng.normal());
    for (let axis = 0; axis < shape.length; axis++) {
      const n = shape[axis]!;
      // Uneven sizes and an even count (tfjs's split gradient fails on a single piece, on every backend).
      const uneven = [1, n - 3, 2].filter((s) => s > 0);
      for (const splits of [...(n > 3 ? [uneven] : []), n % 2 === 0 && n > 2 ? n / 2 : n]) {
        const run = () =>
          tf.tidy(() => {
            const x = tf.tensor(values, shape);
            const pieces = tf.split(x, splits, axis).map((p) => Array.from(p.dataSync()));
            // Weighted so every piece's gradient differs: tf.split's gradient is a Concat.
            const w = tf.tensor(weights, shape);
            const g = tf.grad((t: tf.Tensor) =>
              tf.sum(
                tf.mul(
                  tf.concat(
                    tf.split(t, splits, axis).map((p, i) => tf.mul(p, i + 1)),
                    axis,
                  ),
                  w,
                ),
              ),
            )(x);
            return { pieces, grad: Array.from(g.dataSync()) };
          });
        const [cpu, wasm] = [await on('cpu', run), await on('wasm', run)];
        expect(wasm, `axis ${axis} splits ${JSON.stringify(splits)}`).toEqual(cpu);
      }
    }
  });

  it('copySlice takes runs shorter and longer than 16 elements alike', () => {
    const shape = [4, 5, 40];
    const x = Float32Array.from({ length: 800 }, (_, i) => i);
    for (const size of [
      [2, 3, 7],
      [2, 3, 40],
      [1, 5, 40],
      [4, 1, 17],
    ]) {
      const begin = [1, 1, 40 - size[2]!].map((b, d) => Math.min(b, shape[d]! - size[d]!));
      const out = new Float32Array(size.reduce((a, b) => a * b, 1));
      copySlice(x, shape, begin, size, out);
      const want: number[] = [];
      for (let i = 0; i < size[0]!; i++)
        for (let j = 0; j < size[1]!; j++)
          for (let k = 0; k < size[2]!; k++)
            want.push((begin[0]! + i) * 200 + (begin[1]! + j) * 40 + begin[2]! + k);
      expect(Array.from(out), `size [${size}]`).toEqual(want);
    }
  });
});
