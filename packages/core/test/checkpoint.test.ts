// Gradient checkpointing (ops/checkpoint.ts) on a stack of residual blocks
// with LoRA-like trainable factors, frozen weights, seeded dropout and a
// constant made inside the loss function: the gradients equal those of the
// plain tape bit for bit, the bytes held when backward starts fall, nothing
// leaks, and a frozen variable is never differentiated. On cpu, wasm and
// webgpu (real WGSL execution: SwiftShader without a GPU).
import { afterAll, describe, expect, it } from 'vitest';
import {
  type BackendName,
  checkpoint,
  geluNew,
  seededDropout,
  tf,
  useBackend,
} from '../src/index.js';
import { webGpuSuite } from './webgpu-suite.js';

const [N, C, F, R, LAYERS] = [24, 16, 64, 4, 4];

const values = (n: number, k: number) =>
  Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + k) * 0.3);

interface Stack {
  embed: tf.Variable; // [C, C], trainable: gradients must flow through every block's input
  blocks: { w1: tf.Variable; w2: tf.Variable; a: tf.Variable; b: tf.Variable }[];
  input: tf.Tensor2D; // [N, C]
  target: tf.Tensor2D; // [N, C]
}

function makeStack(): Stack {
  const v = (shape: number[], k: number, trainable: boolean) =>
    tf.variable(tf.tensor(values(shape[0]! * shape[1]!, k), shape), trainable);
  return {
    embed: v([C, C], 1, true),
    blocks: Array.from({ length: LAYERS }, (_, l) => ({
      w1: v([C, F], 10 + l, false), // frozen
      w2: v([F, C], 20 + l, false), // frozen
      a: v([R, C], 30 + l, true),
      b: v([F, R], 40 + l, true),
    })),
    input: tf.tensor2d(values(N * C, 2), [N, C]),
    target: tf.tensor2d(values(N * C, 3), [N, C]),
  };
}

/** x [N, C] -> x + dropout(gelu(x W1 + x A^T B^T)) W2 * scale, scale a constant [1, C]. */
function block(s: Stack['blocks'][number], l: number) {
  return (x: tf.Tensor, [scale]: readonly tf.Tensor[]) => {
    const h = tf.add(
      tf.matMul(x, s.w1),
      tf.matMul(tf.matMul(x, s.a, false, true), s.b, false, true),
    );
    const d = seededDropout(geluNew(h), 0.2, 7 + l); // [N, F]
    return tf.add(x, tf.mul(tf.matMul(d, s.w2), scale!));
  };
}

/** The loss, the trainable variables' gradients, and the bytes held when backward began. */
async function run(s: Stack, checkpointed: boolean) {
  let heldAtBackward = 0;
  const probe = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
    value: tf.clone(args[0] as tf.Tensor),
    gradFunc: (dy: tf.Tensor) => {
      heldAtBackward = tf.memory().numBytes;
      return dy;
    },
  }));
  const trainable = [s.embed, ...s.blocks.flatMap((b) => [b.a, b.b])];
  const before = tf.memory().numTensors;
  const { value, grads } = tf.variableGrads(() => {
    const scale = tf.fill([1, C], 0.9); // freed when the forward pass ends
    let x: tf.Tensor = tf.matMul(s.input, s.embed);
    s.blocks.forEach((b, l) => {
      const variables = [b.w1, b.w2, b.a, b.b];
      x = checkpointed ? checkpoint(block(b, l), x, [scale], variables) : block(b, l)(x, [scale]);
    });
    return probe(tf.sum(tf.square(tf.sub(x, s.target)))) as tf.Scalar;
  }, trainable);
  const out = {
    loss: (await value.data())[0]!,
    grads: await Promise.all(
      trainable.map(async (v) => (await grads[v.name]!.data()) as Float32Array),
    ),
    frozenGrads: s.blocks.filter((b) => grads[b.w1.name] || grads[b.w2.name]).length,
    heldAtBackward,
  };
  tf.dispose([value, ...Object.values(grads)]);
  expect(tf.memory().numTensors, 'tensors left after the step').toBe(before);
  return out;
}

async function compare(backend: BackendName) {
  await useBackend(backend);
  const s = makeStack();
  const plain = await run(s, false);
  const ckpt = await run(s, true);
  expect(ckpt.loss).toBe(plain.loss);
  ckpt.grads.forEach((g, i) => expect(g, `gradient ${i}`).toEqual(plain.grads[i]));
  expect(plain.grads[0]!.some((v) => v !== 0)).toBe(true); // through every block, not vacuous
  expect(ckpt.frozenGrads).toBe(0);
  // Plain keeps every block's [N, F] intermediates (~5 of them) until backward; checkpointed
  // keeps one [N, C] input per block.
  expect(ckpt.heldAtBackward).toBeLessThan(plain.heldAtBackward - LAYERS * 3 * N * F * 4);
  tf.dispose([s.embed, s.input, s.target, ...s.blocks.flatMap((b) => Object.values(b))]);
}

describe('gradient checkpointing', () => {
  afterAll(async () => {
    await useBackend('cpu');
  });

  it('cpu: the same gradients bit for bit, fewer bytes held, nothing leaked', async () => {
    await compare('cpu');
  });

  it('wasm: the same', async () => {
    await compare('wasm');
  });

  it('outside a tape it is the block itself', async () => {
    await useBackend('cpu');
    const s = makeStack();
    const scale = tf.fill([1, C], 0.9);
    const x = tf.matMul(s.input, s.embed);
    const b = s.blocks[0]!;
    const y = checkpoint(block(b, 0), x, [scale], [b.w1, b.w2, b.a, b.b]);
    const plain = block(b, 0)(x, [scale]);
    expect(await y.data()).toEqual(await plain.data());
    tf.dispose([scale, x, y, plain, s.embed, s.input, s.target]);
    tf.dispose(s.blocks.flatMap((k) => Object.values(k)));
  });
});

describe('gradient checkpointing on webgpu', () => {
  webGpuSuite();

  it('the same gradients bit for bit, fewer bytes held, nothing leaked', async () => {
    await compare('webgpu');
  }, 120_000);
});
