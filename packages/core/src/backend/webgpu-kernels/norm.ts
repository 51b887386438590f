// LayerNorm and RMSNorm over the last axis, fused, on 'webgpu':
//   LoraFleetNormStats  x [n, C] -> [n, 2]: (mean, rstd) per row (mean 0 for RMSNorm)
//   LoraFleetNormApply  y = (x - mean) rstd gamma (+ beta)            elementwise
//   LoraFleetNormGrad   dx = rstd (g - mean(g) - xhat mean(g xhat)),  g = dy gamma
//                       (RMSNorm: no mean(g) term), one workgroup per row
// The op (fusedNorm) keeps only the [n, 2] statistics for backward. It needs
// a frozen gamma and beta (LoRA): it computes no dgamma or dbeta, so callers
// take tfjs's path when they are trained.
import { tf } from '../tf.js';
import {
  ROW_THREADS,
  registerWebGpuKernels,
  type WebGpuKernelArgs,
  rowProgram,
  workgroupReduce,
  type FlatDispatchUtil,
  type WebGpuProgramRunner,
  elementwiseProgram,
} from './rows.js';
import { webGpuMatMulChoice } from './matmul-kernel.js';

export const NORM_STATS = 'LoraFleetNormStats';
export const NORM_APPLY = 'LoraFleetNormApply';
export const NORM_GRAD = 'LoraFleetNormGrad';

export type NormKind = 'layer' | 'rms';

type Info = tf.TensorInfo;
/** The mean of `value` (a WGSL expression over `c`, the column) across the row, as `name`. */
function rowMean(name: string, value: string): string {
  return `
      acc = 0.0;
      for (var c = i32(i); c < uniforms.cols; c += ${ROW_THREADS}) {
        if (live) { acc += ${value}; }
      }
      ${workgroupReduce(name, 'sum', 'v / f32(uniforms.cols)')}`;
}

/** One workgroup per row of x [rows, cols]; `body` as rows.ts's rowProgram describes. */
function normRowProgram(
  shaderKey: string,
  vars: string[],
  outputShape: number[],
  rows: number,
  body: string,
) {
  const uniforms = 'rows : i32, cols : i32, eps : f32,';
  return rowProgram({
    shaderKey,
    variableNames: vars,
    outputShape,
    rows,
    uniforms,
    lengthUniform: 'cols',
    body,
  });
}

function statsProgram(kind: NormKind, rows: number) {
  const mean = kind === 'layer' ? rowMean('mean', 'x[base + c]') : 'let mean = 0.0;';
  const body = `${mean}
      ${rowMean('variance', '(x[base + c] - mean) * (x[base + c] - mean)')}
      if (i == 0u && live) {
        result[row * 2] = mean;
        result[row * 2 + 1] = inverseSqrt(variance + uniforms.eps);
      }`;
  return normRowProgram(`lorafleet_norm_stats_${kind}`, ['x'], [rows, 2], rows, body);
}

/** dx of the norm; `residual`: plus input r (a residual stream's gradient, added in the same pass). */
function gradProgram(kind: NormKind, rows: number, cols: number, residual: boolean) {
  const g = 'dy[base + c] * gamma[c]';
  const plus = residual ? 'r[base + c] + ' : '';
  const xhat = '(x[base + c] - stats[row * 2]) * stats[row * 2 + 1]';
  const meanG = kind === 'layer' ? rowMean('meanG', g) : 'let meanG = 0.0;';
  const body = `${meanG}
      ${rowMean('meanGX', `${g} * ${xhat}`)}
      for (var c = i32(i); c < uniforms.cols; c += ${ROW_THREADS}) {
        if (live) {
          result[base + c] = ${plus}stats[row * 2 + 1] * (${g} - meanG - ${xhat} * meanGX);
        }
      }`;
  return normRowProgram(
    `lorafleet_norm_grad_${kind}${residual ? '_res' : ''}`,
    ['x', 'stats', 'gamma', 'dy', ...(residual ? ['r'] : [])],
    [rows, cols],
    rows,
    body,
  );
}

function applyProgram(util: FlatDispatchUtil, shape: [number, number], beta: boolean) {
  return elementwiseProgram(util, {
    shaderKey: `lorafleet_norm_apply_${beta ? 'beta' : 'nobeta'}`,
    variableNames: ['x', 'stats', 'gamma', ...(beta ? ['beta'] : [])],
    shape,
    uniforms: 'cols : i32,',
    body: `
      let row = index / uniforms.cols;
      let c = index - row * uniforms.cols;
      let y = (x[index] - stats[row * 2]) * stats[row * 2 + 1] * gamma[c];
      setOutputAtIndex(index, y${beta ? ' + beta[c]' : ''});`,
  });
}

function rowsCols(x: Info): [number, number] {
  if (x.shape.length !== 2 || x.dtype !== 'float32') {
    throw new Error(`fused norm: x must be float32 [n, C], got ${x.dtype} [${x.shape}]`);
  }
  return x.shape as [number, number];
}

function kernels(util: FlatDispatchUtil): [string, (args: WebGpuKernelArgs) => Info][] {
  const run = (args: WebGpuKernelArgs, program: object, inputs: Info[], uniforms: number[]) =>
    (args.backend as unknown as WebGpuProgramRunner).runWebGPUProgram(program, inputs, 'float32', [
      ...uniforms.slice(0, -1).map((v) => ({ type: 'int32' as const, data: [v] })),
      { type: 'float32' as const, data: [uniforms.at(-1)!] },
    ]);
  return [
    [
      NORM_STATS,
      (args) => {
        const { x } = args.inputs as { x: Info };
        const { kind, eps } = args.attrs as unknown as { kind: NormKind; eps: number };
        const [n, c] = rowsCols(x);
        return run(args, statsProgram(kind, n), [x], [n, c, eps]);
      },
    ],
    [
      NORM_GRAD,
      (args) => {
        const { x, stats, gamma, dy, r } = args.inputs as Record<string, Info | undefined>;
        const { kind } = args.attrs as unknown as { kind: NormKind };
        const [n, c] = rowsCols(x!);
        if (r && r.shape.join() !== x!.shape.join())
          throw new Error(`${NORM_GRAD}: the residual r must be [${n}, ${c}], got [${r.shape}]`);
        const inputs = [x!, stats!, gamma!, dy!, ...(r ? [r] : [])];
        return run(args, gradProgram(kind, n, c, r !== undefined), inputs, [n, c, 0]);
      },
    ],
    [
      NORM_APPLY,
      (args) => {
        const { x, stats, gamma, beta } = args.inputs as Record<string, Info | undefined>;
        const [n, c] = rowsCols(x!);
        const inputs = [x!, stats!, gamma!, ...(beta ? [beta] : [])];
        const program = applyProgram(util, [n, c], beta !== undefined);
        return (args.backend as unknown as WebGpuProgramRunner).runWebGPUProgram(
          program,
          inputs,
          'float32',
          [{ type: 'int32', data: [c] }],
        );
      },
    ],
  ];
}

/** Registers the three kernels for 'webgpu' (once). */
export function registerWebGpuNorm(
  api: Pick<typeof tf, 'registerKernel' | 'getKernel'>,
  util: FlatDispatchUtil,
): void {
  registerWebGpuKernels(api, kernels(util));
}

let enabled = true;

/** Turns the fused norms off (tests compare them with tfjs's path), or on again. */
export function useFusedNorm(on: boolean): void {
  enabled = on;
}

/** True on webgpu with the project's kernels, for a frozen gamma and beta. */
export function fusedNormAvailable(gamma: tf.Tensor, beta?: tf.Tensor | null): boolean {
  const trained = (t?: tf.Tensor | null) =>
    (t as { trainable?: boolean } | null)?.trainable === true;
  return (
    enabled &&
    tf.getBackend() === 'webgpu' &&
    webGpuMatMulChoice() === 'project' &&
    !trained(gamma) &&
    !trained(beta)
  );
}

/** LayerNorm (`beta` given, kind 'layer') or RMSNorm (kind 'rms') of x [..., C]. */
export function fusedNorm(
  x: tf.Tensor,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D | null,
  eps: number,
  kind: NormKind,
): tf.Tensor {
  const shape = x.shape;
  const cols = shape[shape.length - 1]!;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
    const stats = tf
      .engine()
      .runKernel(NORM_STATS, { x: input }, { kind, eps } as never) as tf.Tensor;
    const inputs: tf.NamedTensorMap = { x: input, stats, gamma };
    if (beta) inputs.beta = beta;
    const value = tf.engine().runKernel(NORM_APPLY, inputs) as tf.Tensor2D;
    save([input, stats]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, st] = saved as [tf.Tensor, tf.Tensor];
        const grad = { x: xs, stats: st, gamma, dy };
        return [tf.engine().runKernel(NORM_GRAD, grad, { kind } as never) as tf.Tensor2D];
      },
    };
  });
  return tf.tidy(() => (op(x.reshape([-1, cols])) as tf.Tensor).reshape(shape));
}
