// The LoRA linear layer fused on 'webgpu' (the project's LoraFleetMatMul
// kernel, backend/webgpu-kernels/), as one custom gradient:
//   forward   h  = xd A^T                              [N, r]  (kept for backward)
//             y  = x op(W) + bias + s h B^T            [N, out] one dispatch
//   backward  dh = s dy B                              [N, r]
//             dx = dy op(W)^T + dh A                   [N, in]  one dispatch
//             dA = dh^T xd                             [r, in]
//             dB = s dy^T h                            [out, r]
// (xd = dropout(x); without dropout xd is x.) W is frozen: no dW is computed,
// and no [in, out] delta is ever built. Six dispatches forward + backward
// replace the unfused path's dozen or so (matmuls, scalings, adds, the bias
// broadcast and their gradients), and no transpose is materialised (the
// kernel transposes in its loads).
import { tf } from '../backend/tf.js';
import {
  LORAFLEET_MATMUL,
  type LoraFleetMatMulAttrs,
  loraFleetMatMulAttrs,
  webGpuMatMulChoice,
} from '../backend/webgpu-kernels/index.js';

export interface FusedLoraInputs {
  /** The layer input [N, in]. */
  x: tf.Tensor2D;
  /** dropout(x) when dropout is on, else null (then the LoRA branch reads x). */
  xd: tf.Tensor2D | null;
  /** W in its storage orientation: the frozen variable, or a fresh f32 copy (disposed after use). */
  weight: () => { w: tf.Tensor2D; transient: boolean };
  /** W stored [out, in] (true: y = x W^T) or [in, out] (false: y = x W, GPT-2's Conv1D). */
  transposeW: boolean;
  bias: tf.Tensor1D | null;
  a: tf.Variable<tf.Rank.R2>; // [r, in]
  b: tf.Variable<tf.Rank.R2>; // [out, r]
  scaling: number;
}

let enabled = true;

/** Turns the fused path off (tests compare it with the unfused one), or on again. */
export function useFusedLoraLinear(on: boolean): void {
  enabled = on;
}

/**
 * True where the fused path runs: the webgpu backend with the project's
 * kernels selected (not LORAFLEET_WEBGPU_KERNELS=stock).
 */
export function fusedLoraAvailable(): boolean {
  return enabled && tf.getBackend() === 'webgpu' && webGpuMatMulChoice() === 'project';
}

interface Extra {
  bias?: tf.Tensor;
  h?: tf.Tensor;
  l?: tf.Tensor;
}

/** C = alpha op(A) op(B) + bias + beta H op(L) in one dispatch. */
function mm(
  a: tf.Tensor,
  b: tf.Tensor,
  attrs: Partial<LoraFleetMatMulAttrs> = {},
  extra: Extra = {},
): tf.Tensor2D {
  const full = loraFleetMatMulAttrs(attrs);
  const inputs: tf.NamedTensorMap = { a, b };
  for (const [name, t] of Object.entries(extra)) if (t) inputs[name] = t as tf.Tensor;
  return tf.engine().runKernel(LORAFLEET_MATMUL, inputs, full as never) as tf.Tensor2D;
}

/** y [N, out] of the LoRA linear, with the fused backward. */
export function fusedLoraLinear(p: FusedLoraInputs): tf.Tensor2D {
  const { transposeW, bias, scaling: s } = p;
  const withW = <T>(use: (w: tf.Tensor2D) => T): T => {
    const { w, transient } = p.weight();
    try {
      return use(w);
    } finally {
      if (transient) w.dispose();
    }
  };
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [x, xd, a, b] = (
      p.xd ? args : [args[0], null, ...args.slice(1)]
    ) as (tf.Tensor2D | null)[];
    const xin = xd ?? x!;
    const h = mm(xin, a!, { transposeB: true }); // [N, r]
    const value = withW((w) =>
      mm(
        x!,
        w,
        { transposeB: transposeW, beta: s, transposeL: true },
        { bias: bias ?? undefined, h, l: b! },
      ),
    );
    save([h, xin]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [hs, xs] = saved as [tf.Tensor2D, tf.Tensor2D];
          const dh = mm(dy, b!, { alpha: s }); // [N, r]
          const dA = mm(dh, xs, { transposeA: true }); // [r, in]
          const dB = mm(dy, hs, { transposeA: true, alpha: s }); // [out, r]
          if (xd === null) {
            const dx = withW((w) => mm(dy, w, { transposeB: !transposeW }, { h: dh, l: a! }));
            return [dx, dA, dB];
          }
          // Dropout: x and xd get their own gradients; autodiff sums them through the mask.
          const dx = withW((w) => mm(dy, w, { transposeB: !transposeW }));
          const dxd = mm(dh, a!); // [N, in]
          return [dx, dxd, dA, dB];
        }),
    };
  });
  const inputs = p.xd ? [p.x, p.xd, p.a, p.b] : [p.x, p.a, p.b];
  return op(...inputs) as tf.Tensor2D;
}
