// RMSNorm with a frozen weight (the Llama family's norms under LoRA) as fused
// kernels on cpu and wasm, forward and backward: composed from tfjs ops it is
// ~6 kernels forward and ~12 backward over [N, C] tensors; fused, one pass
// each. The row sums are float64. On wasm they run as SIMD128 code in the heap
// (assembly/rms-norm.ts through simd/step-kernels.ts); the TypeScript loops
// here are the cpu backend's kernels, the reference, and wasm's fallback.
//   LoraFleetRmsNorm      x [..., C], gamma [C] (attr eps) -> y [..., C], rstd [rows]
//   LoraFleetRmsNormGrad  x, gamma, rstd, dy -> dx (no gamma gradient: it is frozen)
import {
  type HostKernelMaker,
  type KernelArgs,
  float32Inputs,
  hostKernelConfigs,
} from './gelu-layer-norm.js';
import { HOST_MEMORY } from './host-memory.js';
import { simdRmsNorm, simdRmsNormGrad } from './simd/step-kernels.js';
import type { HostKernelConfig } from './softmax-xent.js';
import type { tf } from './tf.js';

export const RMS_NORM = 'LoraFleetRmsNorm';
export const RMS_NORM_GRAD = 'LoraFleetRmsNormGrad';

/** Rows of C: y = x rstd gamma, rstd = 1 / sqrt(mean(x^2) + eps), kept per row for the backward. */
export function rmsNormInto(
  x: ArrayLike<number>,
  gamma: ArrayLike<number>,
  eps: number,
  out: { y: Float32Array; rstd: Float32Array },
): void {
  const C = gamma.length;
  for (let r = 0; r < out.rstd.length; r++) {
    const o = r * C;
    let sq = 0;
    for (let c = 0; c < C; c++) sq += x[o + c]! * x[o + c]!;
    const rstd = Math.fround(1 / Math.sqrt(sq / C + eps));
    for (let c = 0; c < C; c++) out.y[o + c] = x[o + c]! * rstd * gamma[c]!;
    out.rstd[r] = rstd;
  }
}

/** With xhat = x rstd and g = dy gamma, per row: dx = rstd (g - xhat mean(g xhat)). */
export function rmsNormGradInto(
  x: ArrayLike<number>,
  gamma: ArrayLike<number>,
  rstd: ArrayLike<number>,
  dy: ArrayLike<number>,
  dx: Float32Array,
): void {
  const C = gamma.length;
  for (let r = 0; r < rstd.length; r++) {
    const o = r * C;
    const s = rstd[r]!;
    let sumGX = 0;
    for (let c = 0; c < C; c++) sumGX += dy[o + c]! * gamma[c]! * x[o + c]!;
    const meanGX = (sumGX * s) / C;
    for (let c = 0; c < C; c++) dx[o + c] = s * (dy[o + c]! * gamma[c]! - x[o + c]! * s * meanGX);
  }
}

/** Rows and width of x [..., C] against gamma [C]. */
function rowsOf(kernel: string, x: tf.TensorInfo, gamma: tf.TensorInfo): number {
  const C = x.shape.at(-1) ?? 0;
  if (gamma.shape.length !== 1 || gamma.shape[0] !== C) {
    throw new Error(
      `${kernel}: gamma must be [${C}] for x [${x.shape.join(', ')}], got [${gamma.shape.join(', ')}]`,
    );
  }
  return x.shape.slice(0, -1).reduce((a, b) => a * b, 1);
}

const KERNELS: Record<string, HostKernelMaker> = {
  [RMS_NORM]: (b, simd) => (args: KernelArgs) => {
    const [x, gamma] = float32Inputs(RMS_NORM, args, ['x', 'gamma']) as [
      tf.TensorInfo,
      tf.TensorInfo,
    ];
    const rows = rowsOf(RMS_NORM, x, gamma);
    const eps = Number(args.attrs?.eps);
    if (!(eps >= 0))
      throw new Error(`${RMS_NORM}: eps must be a number >= 0, got ${String(args.attrs?.eps)}`);
    const { infos, outs, ins } = HOST_MEMORY[b](
      args.backend,
      [
        { shape: x.shape, dtype: 'float32' },
        { shape: [rows], dtype: 'float32' },
      ],
      [x, gamma],
    );
    const [y, rstd] = infos as [tf.TensorInfo, tf.TensorInfo];
    if (simd && simdRmsNorm(args.backend, { x, gamma }, eps, { y, rstd })) return infos;
    const [yOut, rstdOut] = outs as Float32Array[];
    rmsNormInto(ins[0]!, ins[1]!, eps, { y: yOut!, rstd: rstdOut! });
    return infos;
  },
  [RMS_NORM_GRAD]: (b, simd) => (args: KernelArgs) => {
    const names = ['x', 'gamma', 'rstd', 'dy'];
    const [x, gamma, rstd, dy] = float32Inputs(RMS_NORM_GRAD, args, names) as tf.TensorInfo[];
    const rows = rowsOf(RMS_NORM_GRAD, x!, gamma!);
    const size = (t: tf.TensorInfo) => t.shape.reduce((a, c) => a * c, 1);
    if (size(rstd!) !== rows || size(dy!) !== size(x!)) {
      throw new Error(
        `${RMS_NORM_GRAD}: rstd [${rstd!.shape.join(', ')}] and dy [${dy!.shape.join(', ')}] ` +
          `do not match x [${x!.shape.join(', ')}]`,
      );
    }
    const { infos, outs, ins } = HOST_MEMORY[b](
      args.backend,
      [{ shape: x!.shape, dtype: 'float32' }],
      [x!, gamma!, rstd!, dy!],
    );
    const inputs = { x: x!, gamma: gamma!, rstd: rstd!, dy: dy! };
    if (simd && simdRmsNormGrad(args.backend, inputs, infos[0]!)) return infos[0]!;
    rmsNormGradInto(ins[0]!, ins[1]!, ins[2]!, ins[3]!, outs[0] as Float32Array);
    return infos[0]!;
  },
};

/** The two kernels on cpu and wasm. */
export const RMS_NORM_KERNELS: readonly HostKernelConfig[] = hostKernelConfigs(KERNELS);
