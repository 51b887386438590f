// GPT-2's gelu_new as one differentiable op: the fused kernels of
// backend/gelu-layer-norm.ts on cpu and wasm, and of
// backend/webgpu-kernels/activations.ts on webgpu (unless stock kernels are
// chosen); tfjs ops elsewhere.
import { GELU_NEW, GELU_NEW_GRAD } from '../backend/gelu-layer-norm.js';
import { tf } from '../backend/tf.js';
import { fusedActivationsAvailable } from '../backend/webgpu-kernels/activations.js';

/** 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), from tfjs ops (autodiff through them). */
export function geluNewComposed(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const inner = tf.mul(
      Math.sqrt(2 / Math.PI),
      tf.add(x, tf.mul(0.044715, tf.mul(x, tf.square(x)))),
    );
    return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
  });
}

/** gelu_new(x), elementwise; fused forward and backward where the backend has the kernels. */
export function geluNew(x: tf.Tensor): tf.Tensor {
  const backend = tf.getBackend();
  const fused = backend === 'webgpu' ? fusedActivationsAvailable() : true;
  if (!fused || tf.getKernel(GELU_NEW, backend) === undefined) return geluNewComposed(x);
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    (args[1] as tf.GradSaveFunc)([input]);
    return {
      value: tf.engine().runKernel(GELU_NEW, { x: input }) as tf.Tensor,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.engine().runKernel(GELU_NEW_GRAD, { x: saved[0]!, dy }) as tf.Tensor,
    };
  });
  return op(x);
}
