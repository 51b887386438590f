// DoRA (Liu et al. 2024, arXiv 2402.09353) as PEFT's DoraLinearLayer
// computes it: the adapted weight is m (W + s B A) / ||W + s B A||, each
// output's row rescaled to a trained magnitude m [out]. LoraLinear holds the
// variables; these are its two pieces of math.
import { tf } from '../backend/tf.js';
import type { LoraAdapter } from './linear.js';

/** ||W + s B A|| over each output's row [out] (PEFT's get_weight_norm); W as [out, in]. */
export function doraRowNorms(
  wOutIn: tf.Tensor2D,
  a: tf.Tensor2D,
  b: tf.Tensor2D,
  scaling: number,
): tf.Tensor1D {
  return tf.tidy(() => {
    const full = tf.add(wOutIn, tf.mul(tf.matMul(b, a), scaling));
    return tf.sqrt(tf.sum(tf.square(full), 1)) as tf.Tensor1D;
  });
}

/**
 * The layer's output without its bias: x W^T + (g - 1) x' W^T + g s x' A^T B^T,
 * g = m / ||W + s B A|| per output, x' the LoRA input (x after dropout; PEFT
 * takes the base term on it too). `base` is x W^T, `dropped` x' W^T [N, out].
 * The norm is held constant in backward (the paper's section 4.3, PEFT's
 * detach): m and the LoRA path get gradients, the norm none.
 */
export function doraOutput(
  base: tf.Tensor2D,
  dropped: tf.Tensor2D,
  xLora: tf.Tensor2D,
  adapter: LoraAdapter,
  rowNorms: (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor1D,
): tf.Tensor2D {
  const { a, b, scaling } = adapter;
  const constantNorm = tf.customGrad((...inputs: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [ia, ib] = inputs as [tf.Tensor2D, tf.Tensor2D];
    return { value: rowNorms(ia, ib), gradFunc: () => [tf.zerosLike(ia), tf.zerosLike(ib)] };
  });
  const g = tf.div(adapter.magnitude!, constantNorm(a, b)); // [out]
  const h = tf.matMul(xLora, a, false, true); // [N, r]
  const lora = tf.mul(tf.matMul(h, b, false, true), scaling); // [N, out]
  return tf.add(base, tf.add(tf.mul(tf.sub(g, 1), dropped), tf.mul(g, lora))) as tf.Tensor2D;
}
