// The gated MLP activation of the Llama family as one differentiable op:
// silu(gate) * up, with silu(g) = g sigmoid(g). Fused kernels on webgpu
// (backend/webgpu-kernels/activations.ts); tfjs ops elsewhere.
import { tf } from '../backend/tf.js';
import {
  SWIGLU,
  SWIGLU_GRAD,
  fusedActivationsAvailable,
} from '../backend/webgpu-kernels/activations.js';

/** silu(gate) * up from tfjs ops (autodiff through them). */
export function swigluComposed(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(gate, tf.sigmoid(gate)), up));
}

/** silu(gate) * up, elementwise over two tensors of one shape. */
export function swiglu(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  if (!fusedActivationsAvailable()) return swigluComposed(gate, up);
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [g, u, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    save([g, u]);
    return {
      value: tf.engine().runKernel(SWIGLU, { gate: g, up: u }) as tf.Tensor,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sg, su] = saved as [tf.Tensor, tf.Tensor];
        const grad = (wrt: 'gate' | 'up') =>
          tf
            .engine()
            .runKernel(SWIGLU_GRAD, { gate: sg, up: su, dy }, { wrt } as never) as tf.Tensor;
        return [grad('gate'), grad('up')];
      },
    };
  });
  return op(gate, up);
}
