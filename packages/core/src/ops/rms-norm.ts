// RMSNorm over the last axis (transformers' LlamaRMSNorm: x / sqrt(mean(x^2)
// + eps) * weight) as one differentiable op. With a frozen weight (LoRA):
// webgpu's fused kernels (backend/webgpu-kernels/norm.ts), or the fused
// kernels of backend/rms-norm.ts on cpu and wasm; with a trained weight (a
// full fine-tune) or elsewhere, tfjs ops.
import { RMS_NORM, RMS_NORM_GRAD } from '../backend/rms-norm.js';
import { tf } from '../backend/tf.js';
import { fusedNorm, fusedNormAvailable } from '../backend/webgpu-kernels/norm.js';

/** From tfjs ops (autodiff through them, the weight's gradient included). */
export function rmsNormComposed(x: tf.Tensor, scale: tf.Tensor, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const variance = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(variance, eps))), scale);
  });
}

const trained = (t: tf.Tensor) => (t as { trainable?: boolean }).trainable === true;

/** Whether rmsNorm runs fused kernels for this weight on the active backend (frozen, kernels there). */
export function rmsNormFused(weight: tf.Tensor): boolean {
  if (fusedNormAvailable(weight)) return true;
  return !trained(weight) && tf.getKernel(RMS_NORM, tf.getBackend()) !== undefined;
}

/** x / sqrt(mean(x^2) + eps) * weight over the last axis of x [..., C]; weight [C]. */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor1D, eps: number): tf.Tensor {
  if (fusedNormAvailable(weight)) return fusedNorm(x, weight, null, eps, 'rms');
  if (!rmsNormFused(weight)) return rmsNormComposed(x, weight, eps);
  // The weight is frozen: a constant of the op, no gradient computed for it.
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, save] = args as [tf.Tensor, tf.GradSaveFunc];
    const [y, rstd] = tf
      .engine()
      .runKernel(RMS_NORM, { x: input, gamma: weight }, { eps } as never) as tf.Tensor[];
    save([input, rstd!, weight]);
    return {
      value: y!,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, srstd, sw] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        const inputs = { x: sx, gamma: sw, rstd: srstd, dy };
        return [tf.engine().runKernel(RMS_NORM_GRAD, inputs) as tf.Tensor];
      },
    };
  });
  return op(x);
}
