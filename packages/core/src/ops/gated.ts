// The gated MLP activations as one differentiable op each: act(gate) * up,
// act silu (SwiGLU, the Llama family's MLP) or gelu_new's tanh gelu (GeGLU,
// Gemma's). Fused kernels on webgpu (backend/webgpu-kernels/activations.ts)
// and, for SwiGLU, on cpu and wasm (backend/swiglu.ts); tfjs ops elsewhere.
import { tf } from '../backend/tf.js';
import {
  GEGLU,
  GEGLU_GRAD,
  SWIGLU,
  SWIGLU_GRAD,
  fusedActivationsAvailable,
} from '../backend/webgpu-kernels/activations.js';
import { geluNew } from './gelu-new.js';

export type GatedActivation = 'silu' | 'gelu_tanh';

/** Per activation: its webgpu kernels, and act(gate) from tfjs ops. */
export const GATED: Record<
  GatedActivation,
  { forward: string; grad: string; act: (gate: tf.Tensor) => tf.Tensor }
> = {
  silu: { forward: SWIGLU, grad: SWIGLU_GRAD, act: (g) => tf.mul(g, tf.sigmoid(g)) },
  gelu_tanh: { forward: GEGLU, grad: GEGLU_GRAD, act: geluNew },
};

/** act(gate) * up from tfjs ops (autodiff through them). */
export function gatedComposed(kind: GatedActivation, gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(GATED[kind].act(gate), up));
}

/** Whether this backend runs `kind` as fused kernels. */
function fused(kind: GatedActivation): boolean {
  const backend = tf.getBackend();
  if (backend === 'webgpu') return fusedActivationsAvailable();
  return tf.getKernel(GATED[kind].forward, backend) !== undefined;
}

/** act(gate) * up, elementwise over two tensors of one shape. */
export function gated(kind: GatedActivation, gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  if (!fused(kind)) return gatedComposed(kind, gate, up);
  const { forward, grad } = GATED[kind];
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [g, u, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    save([g, u]);
    return {
      value: tf.engine().runKernel(forward, { gate: g, up: u }) as tf.Tensor,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sg, su] = saved as [tf.Tensor, tf.Tensor];
        const wrt = (w: 'gate' | 'up') =>
          tf.engine().runKernel(grad, { gate: sg, up: su, dy }, { wrt: w } as never) as tf.Tensor;
        return [wrt('gate'), wrt('up')];
      },
    };
  });
  return op(gate, up);
}

/** silu(gate) * up. */
export const swiglu = (gate: tf.Tensor, up: tf.Tensor) => gated('silu', gate, up);
export const swigluComposed = (gate: tf.Tensor, up: tf.Tensor) => gatedComposed('silu', gate, up);
