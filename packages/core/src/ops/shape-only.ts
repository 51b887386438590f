// Ops that keep for the backward pass only what their gradient reads:
// nothing for adds, scales and reshapes (their gradients need shapes), the
// constant for a product with one. tfjs's own Add, Mul and Reshape save their inputs
// (clones sharing the buffer) only to read their shapes in backward, which
// keeps alive, until then, buffers no gradient reads: a base matmul's output
// before its bias, a LoRA product before its scale, attention scores before
// the mask. On a GPT-2 LoRA step on wasm such buffers were 57% of what the
// tape held (docs/training-step.md). Each op here computes the same values
// as the tfjs op it replaces, forward and backward. When nothing records a
// gradient (evaluation, generation, inside a checkpointed forward), each is
// the plain tfjs op: a custom gradient's bookkeeping would buy nothing there.
import { recordingGradients } from '../backend/engine-tape.js';
import { tf } from '../backend/tf.js';

type Args = (tf.Tensor | tf.GradSaveFunc)[];

/** a + b for a and b of one shape; gradient dy to both. */
export function addSame<T extends tf.Tensor>(a: T, b: tf.Tensor): T {
  if (a.shape.join() !== b.shape.join()) {
    throw new Error(`addSame: shapes [${a.shape.join(', ')}] and [${b.shape.join(', ')}] differ`);
  }
  if (!recordingGradients()) return tf.add(a, b) as T;
  const op = tf.customGrad((...args: Args) => ({
    value: tf.add(args[0] as tf.Tensor, args[1] as tf.Tensor),
    gradFunc: (dy: tf.Tensor) => [dy, dy],
  }));
  return op(a, b) as T;
}

/** x + c for a constant c (no gradient: a mask), broadcast as tf.add broadcasts; gradient dy. */
export function addConstant<T extends tf.Tensor>(x: T, c: tf.Tensor): T {
  const shape = x.shape;
  if (!recordingGradients()) return keptShape(tf.add(x, c), shape, c, 'addConstant') as T;
  const op = tf.customGrad((...args: Args) => ({
    value: keptShape(tf.add(args[0] as tf.Tensor, c), shape, c, 'addConstant'),
    gradFunc: (dy: tf.Tensor) => dy,
  }));
  return op(x) as T;
}

/**
 * y [..., n] + bias [n]; gradients dy and dy summed over the leading axes. A
 * frozen variable's sum is not computed (a custom gradient computes every
 * input's, where tfjs's tape skips those no variable needs): it is a constant.
 */
export function addBias<T extends tf.Tensor>(y: T, bias: tf.Tensor1D): T {
  const n = y.shape[y.rank - 1];
  if (bias.rank !== 1 || bias.shape[0] !== n) {
    throw new Error(`addBias: bias [${bias.shape.join(', ')}] for rows of ${n}`);
  }
  const frozen = bias instanceof tf.Variable && !bias.trainable;
  if (!recordingGradients() || frozen) return addConstant(y, bias);
  const leading = Array.from({ length: y.rank - 1 }, (_, i) => i);
  const op = tf.customGrad((...args: Args) => ({
    value: tf.add(args[0] as tf.Tensor, args[1] as tf.Tensor),
    gradFunc: (dy: tf.Tensor) => [dy, leading.length > 0 ? tf.sum(dy, leading) : dy],
  }));
  return op(y, bias) as T;
}

/** x * s for a number s; gradient dy * s (no gradient to s is computed). */
export function scaleBy<T extends tf.Tensor>(x: T, s: number): T {
  if (!recordingGradients()) return tf.mul(x, s) as T;
  const op = tf.customGrad((...args: Args) => ({
    value: tf.mul(args[0] as tf.Tensor, s),
    gradFunc: (dy: tf.Tensor) => tf.mul(dy, s),
  }));
  return op(x) as T;
}

/**
 * x * c for a constant c (no gradient: rotary tables) broadcast over x, as
 * tf.mul broadcasts; gradient dy * c. Keeps c, not x (tf.mul keeps both).
 */
export function mulConstant<T extends tf.Tensor>(x: T, c: tf.Tensor): T {
  const shape = x.shape;
  if (!recordingGradients()) return keptShape(tf.mul(x, c), shape, c, 'mulConstant') as T;
  const op = tf.customGrad((...args: Args) => {
    (args[1] as tf.GradSaveFunc)([c]);
    return {
      value: keptShape(tf.mul(args[0] as tf.Tensor, c), shape, c, 'mulConstant'),
      gradFunc: (dy: tf.Tensor, [kept]: tf.Tensor[]) => tf.mul(dy, kept!),
    };
  });
  return op(x) as T;
}

/** x reshaped to `shape` (-1 allowed); gradient dy reshaped back. */
export function reshapeTo<R extends tf.Rank>(x: tf.Tensor, shape: number[]): tf.Tensor<R> {
  if (!recordingGradients()) return tf.reshape(x, shape) as unknown as tf.Tensor<R>;
  const from = x.shape;
  const op = tf.customGrad((...args: Args) => ({
    value: tf.reshape(args[0] as tf.Tensor, shape),
    gradFunc: (dy: tf.Tensor) => tf.reshape(dy, from),
  }));
  return op(x) as tf.Tensor<R>;
}

/** `value`, if it has x's shape: the constant `c` broadcast along x, not x along c. */
function keptShape(value: tf.Tensor, shape: number[], c: tf.Tensor, op: string): tf.Tensor {
  if (value.shape.join() !== shape.join()) {
    value.dispose();
    throw new Error(`${op}: [${c.shape.join(', ')}] would broadcast x [${shape.join(', ')}]`);
  }
  return value;
}
