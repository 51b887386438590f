// LayerNorm over the last axis (torch.nn.LayerNorm: biased variance) as one
// differentiable op: the fused kernels of backend/gelu-layer-norm.ts on cpu and
// wasm (gradients for x, gamma and beta in one pass), the WGSL kernels of
// backend/webgpu-kernels/norm.ts on webgpu (frozen gamma and beta), tfjs ops elsewhere.
import { LAYER_NORM, LAYER_NORM_GRAD } from '../backend/gelu-layer-norm.js';
import { tf } from '../backend/tf.js';
import { fusedNorm, fusedNormAvailable } from '../backend/webgpu-kernels/norm.js';

/** From tfjs ops (autodiff through them). x [..., C], gamma and beta [C]. */
export function layerNormComposed(
  x: tf.Tensor,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  eps: number,
): tf.Tensor {
  return tf.tidy(() => {
    const mean = tf.mean(x, -1, true);
    const centered = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centered), -1, true);
    return tf.add(tf.mul(tf.mul(centered, tf.rsqrt(tf.add(variance, eps))), gamma), beta);
  });
}

/** (x - mean) / sqrt(var + eps) * gamma + beta over the last axis of x [..., C]. */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  if (fusedNormAvailable(gamma, beta)) {
    return fusedNorm(x, gamma as tf.Tensor1D, beta as tf.Tensor1D, eps, 'layer');
  }
  if (tf.getKernel(LAYER_NORM, tf.getBackend()) === undefined) {
    return layerNormComposed(x, gamma, beta, eps);
  }
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, g, b] = args as [tf.Tensor, tf.Tensor, tf.Tensor];
    const save = args[3] as tf.GradSaveFunc;
    const [y, mean, rstd] = tf
      .engine()
      .runKernel(LAYER_NORM, { x: input, gamma: g, beta: b }, { eps } as never) as tf.Tensor[];
    save([input, g, mean!, rstd!]);
    return {
      value: y!,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sg, smean, srstd] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
        return tf.engine().runKernel(LAYER_NORM_GRAD, {
          x: sx,
          gamma: sg,
          mean: smean,
          rstd: srstd,
          dy,
        }) as tf.Tensor[];
      },
    };
  });
  return op(x, gamma, beta);
}
