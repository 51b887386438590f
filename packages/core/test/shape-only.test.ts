// The ops that keep for backward only what their gradient reads
// (ops/shape-only.ts): each equals the tfjs op it replaces bit for bit,
// forward and gradient, and keeps fewer bytes on the tape (nothing, or the
// constant). On cpu, wasm and webgpu (real WGSL execution: SwiftShader
// without a GPU).
import { afterAll, describe, expect, it } from 'vitest';
import {
  type BackendName,
  addBias,
  addConstant,
  addSame,
  mulConstant,
  reshapeTo,
  scaleBy,
  tf,
  useBackend,
} from '../src/index.js';
import { webGpuSuite } from './webgpu-suite.js';

const values = (n: number, k: number) =>
  Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.7 + k) * 2);

interface Case {
  name: string;
  /** The inputs' shapes; every input is differentiated. */
  shapes: number[][];
  ours: (xs: tf.Tensor[], c: tf.Tensor) => tf.Tensor;
  tfjs: (xs: tf.Tensor[], c: tf.Tensor) => tf.Tensor;
}

/** c: a constant [1, 5] (a mask, a rotary table). */
const CASES: Case[] = [
  {
    name: 'addSame',
    shapes: [
      [3, 4, 5],
      [3, 4, 5],
    ],
    ours: ([a, b]) => addSame(a!, b!),
    tfjs: ([a, b]) => tf.add(a!, b!),
  },
  {
    name: 'addBias',
    shapes: [[3, 4, 5], [5]],
    ours: ([y, b]) => addBias(y!, b as tf.Tensor1D),
    tfjs: ([y, b]) => tf.add(y!, b!),
  },
  {
    name: 'addConstant',
    shapes: [[3, 4, 5]],
    ours: ([x], c) => addConstant(x!, c),
    tfjs: ([x], c) => tf.add(x!, c),
  },
  {
    name: 'mulConstant',
    shapes: [[3, 4, 5]],
    ours: ([x], c) => mulConstant(x!, c),
    tfjs: ([x], c) => tf.mul(x!, c),
  },
  {
    name: 'scaleBy',
    shapes: [[3, 4, 5]],
    ours: ([x]) => scaleBy(x!, 0.3125),
    tfjs: ([x]) => tf.mul(x!, 0.3125),
  },
  {
    name: 'reshapeTo',
    shapes: [[3, 4, 5]],
    ours: ([x]) => reshapeTo(x!, [-1, 10]),
    tfjs: ([x]) => tf.reshape(x!, [-1, 10]),
  },
];

/** f's value, its gradients (of sum(w * f)) and the bytes the tape kept from its forward pass. */
async function run(f: Case['ours'], shapes: number[][]) {
  const xs = shapes.map((s, i) =>
    tf.tensor(
      values(
        s.reduce((a, b) => a * b, 1),
        i,
      ),
      s,
    ),
  );
  const c = tf.tensor(values(5, 9), [1, 5]);
  const engine = tf.engine() as unknown as { state: { activeTape: { saved?: tf.Tensor[] }[] } };
  let kept = 0;
  const { value, grads } = tf.valueAndGrads((...inputs: tf.Tensor[]) => {
    const y = f(inputs, c);
    const w = tf.tensor(values(y.size, 5), y.shape);
    const loss = tf.sum(tf.mul(y, w));
    // The tape's saved tensors of f's own nodes (the loss's multiply keeps y and w: 2 more).
    kept = engine.state.activeTape.flatMap((n) => n.saved ?? []).reduce((s, t) => s + t.size, 0);
    return loss;
  })(xs);
  const out = {
    value: (await value.data())[0]!,
    grads: await Promise.all(grads.map(async (g) => (await g.data()) as Float32Array)),
    kept,
  };
  tf.dispose([...xs, c, value, ...grads]);
  return out;
}

async function compareOn(backend: BackendName) {
  await useBackend(backend);
  for (const k of CASES) {
    const before = tf.memory().numTensors;
    const [ours, theirs] = [await run(k.ours, k.shapes), await run(k.tfjs, k.shapes)];
    expect(ours.value, k.name).toBe(theirs.value);
    ours.grads.forEach((g, i) => expect(g, `${k.name} gradient ${i}`).toEqual(theirs.grads[i]));
    expect(ours.kept, `${k.name} keeps less`).toBeLessThan(theirs.kept);
    expect(tf.memory().numTensors, `${k.name} leaves nothing`).toBe(before);
  }
  expect(() => addSame(tf.zeros([2, 3]), tf.zeros([3]))).toThrow(
    /shapes \[2, 3\] and \[3\] differ/,
  );
  expect(() => addConstant(tf.zeros([3]), tf.zeros([2, 3]))).toThrow(/would broadcast x/);
  expect(() => addBias(tf.zeros([2, 3]), tf.zeros([2]) as tf.Tensor1D)).toThrow(/rows of 3/);
}

describe('shape-only ops', () => {
  afterAll(async () => {
    await useBackend('cpu');
  });

  it('cpu: the tfjs op bit for bit, forward and gradient, keeping less', async () => {
    await compareOn('cpu');
  });

  it('wasm: the same', async () => {
    await compareOn('wasm');
  });
});

describe('shape-only ops on webgpu', () => {
  webGpuSuite();

  it('the tfjs op bit for bit, forward and gradient, keeping less', async () => {
    await compareOn('webgpu');
  }, 120_000);
});
