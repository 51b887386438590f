// GPT-2's gelu_new and LayerNorm as fused kernels on cpu and wasm (TypeScript
// over the backend's memory, host-memory.ts), forward and backward. Composed
// from tfjs ops, each is ~8 kernels forward and ~15 backward over [N, C]
// tensors, each pass a full read and write of memory; fused, one pass each.
// Accumulations are float64. On wasm, all four run as SIMD128 code in the
// heap (assembly/gelu-new.ts, layer-norm.ts through simd/step-kernels.ts);
// the TypeScript loops are the cpu backend's kernels,
// the reference, and wasm's fallback where the SIMD modules cannot load.
import { tanhRational } from './fast-math.js';
import { HOST_BACKENDS, HOST_MEMORY, type HostBackendName } from './host-memory.js';
import {
  simdGeluNew,
  simdGeluNewGrad,
  simdLayerNorm,
  simdLayerNormGrad,
} from './simd/step-kernels.js';
import type { HostKernelConfig } from './softmax-xent.js';
import type { tf } from './tf.js';

export const GELU_NEW = 'LoraFleetGeluNew';
export const GELU_NEW_GRAD = 'LoraFleetGeluNewGrad';
export const LAYER_NORM = 'LoraFleetLayerNorm';
export const LAYER_NORM_GRAD = 'LoraFleetLayerNormGrad';

const K = Math.sqrt(2 / Math.PI);
const A = 0.044715;

/**
 * tanh(u): the fast rational form where most activations are; beyond |u| = 4
 * its 3e-7 absolute error would dominate 1 - tanh^2 in the gradient.
 */
const tanh = (u: number) => (u < 4 && u > -4 ? tanhRational(u) : Math.tanh(u));

/** y = 0.5 x (1 + tanh(K (x + A x^3))), elementwise. */
export function geluNewInto(x: ArrayLike<number>, y: Float32Array): void {
  for (let i = 0; i < y.length; i++) {
    const v = x[i]!;
    y[i] = 0.5 * v * (1 + tanh(K * (v + A * v * v * v)));
  }
}

/** dx = dy * d gelu_new / dx, elementwise. */
export function geluNewGradInto(
  x: ArrayLike<number>,
  dy: ArrayLike<number>,
  dx: Float32Array,
): void {
  for (let i = 0; i < dx.length; i++) {
    const v = x[i]!;
    const t = tanh(K * (v + A * v * v * v));
    dx[i] = dy[i]! * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * K * (1 + 3 * A * v * v));
  }
}

/**
 * Rows of C: y = (x - mean) rstd gamma + beta with the biased variance,
 * rstd = 1 / sqrt(var + eps); mean and rstd per row are kept for the backward.
 */
export function layerNormInto(
  x: ArrayLike<number>,
  gamma: ArrayLike<number>,
  beta: ArrayLike<number>,
  eps: number,
  out: { y: Float32Array; mean: Float32Array; rstd: Float32Array },
): void {
  const C = gamma.length;
  for (let r = 0; r < out.mean.length; r++) {
    const o = r * C;
    let sum = 0;
    for (let c = 0; c < C; c++) sum += x[o + c]!;
    const mean = sum / C;
    let sq = 0;
    for (let c = 0; c < C; c++) sq += (x[o + c]! - mean) ** 2;
    const rstd = 1 / Math.sqrt(sq / C + eps);
    for (let c = 0; c < C; c++) out.y[o + c] = (x[o + c]! - mean) * rstd * gamma[c]! + beta[c]!;
    out.mean[r] = mean;
    out.rstd[r] = rstd;
  }
}

/**
 * With xhat = (x - mean) rstd and g = dy gamma, per row:
 * dx = rstd (g - mean(g) - xhat mean(g xhat)); dgamma = sum over rows of dy xhat,
 * dbeta = sum over rows of dy.
 */
export function layerNormGradInto(
  x: ArrayLike<number>,
  gamma: ArrayLike<number>,
  mean: ArrayLike<number>,
  rstd: ArrayLike<number>,
  dy: ArrayLike<number>,
  out: { dx: Float32Array; dgamma: Float32Array; dbeta: Float32Array },
): void {
  const C = gamma.length;
  const dgamma = new Float64Array(C);
  const dbeta = new Float64Array(C);
  for (let r = 0; r < mean.length; r++) {
    const o = r * C;
    const m = mean[r]!;
    const s = rstd[r]!;
    let sumG = 0;
    let sumGX = 0;
    for (let c = 0; c < C; c++) {
      const xhat = (x[o + c]! - m) * s;
      const g = dy[o + c]! * gamma[c]!;
      sumG += g;
      sumGX += g * xhat;
      dgamma[c]! += dy[o + c]! * xhat;
      dbeta[c]! += dy[o + c]!;
    }
    const meanG = sumG / C;
    const meanGX = sumGX / C;
    for (let c = 0; c < C; c++) {
      const xhat = (x[o + c]! - m) * s;
      out.dx[o + c] = s * (dy[o + c]! * gamma[c]! - meanG - xhat * meanGX);
    }
  }
  out.dgamma.set(dgamma);
  out.dbeta.set(dbeta);
}

export type KernelArgs = {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
};

/** The named inputs, each float32, or an error naming the kernel and the input. */
export function float32Inputs(
  kernel: string,
  args: KernelArgs,
  names: readonly string[],
): tf.TensorInfo[] {
  return names.map((name) => {
    const t = args.inputs[name];
    if (t === undefined) throw new Error(`${kernel}: input ${name} is required`);
    if (t.dtype !== 'float32')
      throw new Error(`${kernel}: ${name} must be float32, got ${t.dtype}`);
    return t;
  });
}

/** Rows and width of x [..., C] against gamma [C]. */
function rowsOf(
  kernel: string,
  x: tf.TensorInfo,
  gamma: tf.TensorInfo,
): { rows: number; C: number } {
  const C = x.shape.at(-1) ?? 0;
  if (gamma.shape.length !== 1 || gamma.shape[0] !== C) {
    throw new Error(
      `${kernel}: gamma must be [${C}] for x [${x.shape.join(', ')}], got [${gamma.shape.join(', ')}]`,
    );
  }
  return { rows: x.shape.slice(0, -1).reduce((a, b) => a * b, 1), C };
}

/** A kernel on backend b; with `simd`, wasm's SIMD code where there is one and it loads. */
export type HostKernelMaker = (
  b: HostBackendName,
  simd: boolean,
) => (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];

/**
 * Each kernel on cpu and wasm (registered from tf.ts through step-kernels.ts):
 * `kernelFunc` with wasm's SIMD code, `host` the TypeScript kernel on the same backend.
 */
export function hostKernelConfigs(kernels: Record<string, HostKernelMaker>): HostKernelConfig[] {
  return HOST_BACKENDS.flatMap((b) =>
    Object.entries(kernels).map(([kernelName, make]) => ({
      kernelName,
      backendName: b,
      kernelFunc: make(b, b === 'wasm') as unknown as tf.KernelFunc,
      host: make(b, false) as unknown as tf.KernelFunc,
    })),
  );
}

const KERNELS: Record<string, HostKernelMaker> = {
  [GELU_NEW]: (b, simd) => (args) => {
    const [x] = float32Inputs(GELU_NEW, args, ['x']) as [tf.TensorInfo];
    const { infos, outs, ins } = HOST_MEMORY[b](
      args.backend,
      [{ shape: x.shape, dtype: 'float32' }],
      [x],
    );
    if (simd && simdGeluNew(args.backend, x, infos[0]!)) return infos[0]!;
    geluNewInto(ins[0]!, outs[0] as Float32Array);
    return infos[0]!;
  },
  [GELU_NEW_GRAD]: (b, simd) => (args) => {
    const [x, dy] = float32Inputs(GELU_NEW_GRAD, args, ['x', 'dy']) as [
      tf.TensorInfo,
      tf.TensorInfo,
    ];
    const { infos, outs, ins } = HOST_MEMORY[b](
      args.backend,
      [{ shape: x.shape, dtype: 'float32' }],
      [x, dy],
    );
    if (simd && simdGeluNewGrad(args.backend, x, dy, infos[0]!)) return infos[0]!;
    geluNewGradInto(ins[0]!, ins[1]!, outs[0] as Float32Array);
    return infos[0]!;
  },
  [LAYER_NORM]: (b, simd) => (args) => {
    const [x, gamma, beta] = float32Inputs(LAYER_NORM, args, [
      'x',
      'gamma',
      'beta',
    ]) as tf.TensorInfo[];
    const { rows } = rowsOf(LAYER_NORM, x!, gamma!);
    const eps = Number(args.attrs?.eps);
    if (!(eps >= 0))
      throw new Error(`${LAYER_NORM}: eps must be a number >= 0, got ${String(args.attrs?.eps)}`);
    const { infos, outs, ins } = HOST_MEMORY[b](
      args.backend,
      [
        { shape: x!.shape, dtype: 'float32' },
        { shape: [rows], dtype: 'float32' },
        { shape: [rows], dtype: 'float32' },
      ],
      [x!, gamma!, beta!],
    );
    const [yInfo, meanInfo, rstdInfo] = infos as [tf.TensorInfo, tf.TensorInfo, tf.TensorInfo];
    const lnInputs = { x: x!, gamma: gamma!, beta: beta! };
    const lnOuts = { y: yInfo, mean: meanInfo, rstd: rstdInfo };
    if (simd && simdLayerNorm(args.backend, lnInputs, eps, lnOuts)) return infos;
    const [y, mean, rstd] = outs as Float32Array[];
    layerNormInto(ins[0]!, ins[1]!, ins[2]!, eps, { y: y!, mean: mean!, rstd: rstd! });
    return infos;
  },
  [LAYER_NORM_GRAD]: (b, simd) => (args) => {
    const names = ['x', 'gamma', 'mean', 'rstd', 'dy'];
    const [x, gamma, ...rest] = float32Inputs(LAYER_NORM_GRAD, args, names) as tf.TensorInfo[];
    const { C } = rowsOf(LAYER_NORM_GRAD, x!, gamma!);
    const { infos, outs, ins } = HOST_MEMORY[b](
      args.backend,
      [
        { shape: x!.shape, dtype: 'float32' },
        { shape: [C], dtype: 'float32' },
        { shape: [C], dtype: 'float32' },
      ],
      [x!, gamma!, ...rest],
    );
    const [dxInfo, dgInfo, dbInfo] = infos as [tf.TensorInfo, tf.TensorInfo, tf.TensorInfo];
    const gradOuts = { dx: dxInfo, dgamma: dgInfo, dbeta: dbInfo };
    if (simd && simdLayerNormGrad(args.backend, [x!, gamma!, ...rest], gradOuts)) return infos;
    const [dx, dgamma, dbeta] = outs as Float32Array[];
    layerNormGradInto(ins[0]!, ins[1]!, ins[2]!, ins[3]!, ins[4]!, {
      dx: dx!,
      dgamma: dgamma!,
      dbeta: dbeta!,
    });
    return infos;
  },
};

/** The four kernels on cpu and wasm. */
export const GELU_LAYER_NORM_KERNELS: readonly HostKernelConfig[] = hostKernelConfigs(KERNELS);
