// The skeleton of the row-wise WGSL kernels (cross-entropy.ts, norm.ts): one
// workgroup of ROW_THREADS invocations per row, rows spread over x and y (a
// dimension holds at most 65535 workgroups), and tree reductions across the
// workgroup in workgroup memory. Also what every kernel module here shares
// with tfjs-backend-webgpu: its types, and registering a list of kernels.
import type { tf } from '../tf.js';

export const ROW_THREADS = 256;
const MAX_GROUPS = 65535; // WebGPU's minimum maxComputeWorkgroupsPerDimension

/** What tfjs-backend-webgpu's webgpu_util offers a flat (one index per invocation) program. */
export interface FlatDispatchUtil {
  flatDispatchLayout(shape: number[]): { x: number[] };
  computeDispatch(
    layout: { x: number[] },
    shape: number[],
    workgroupSize: [number, number, number],
  ): [number, number, number];
}

/** The part of tfjs-backend-webgpu's backend the kernels call. */
export interface WebGpuProgramRunner {
  runWebGPUProgram(
    program: object,
    inputs: tf.TensorInfo[],
    dtype: 'float32',
    uniforms?: { type: 'int32' | 'float32'; data: number[] }[],
  ): tf.TensorInfo;
}

/**
 * A program with one invocation per output element of `shape` (64 per
 * workgroup). `body` (WGSL) sees `index`, the flat output index, always
 * < uniforms.size, and ends with `setOutputAtIndex(index, value)`.
 */
export function elementwiseProgram(
  util: FlatDispatchUtil,
  o: {
    shaderKey: string;
    variableNames: string[];
    shape: number[];
    /** Extra uniform declarations, e.g. "cols : i32,". */
    uniforms?: string;
    body: string;
  },
) {
  const workgroupSize: [number, number, number] = [64, 1, 1];
  const dispatchLayout = util.flatDispatchLayout(o.shape);
  return {
    variableNames: o.variableNames,
    outputShape: o.shape,
    shaderKey: o.shaderKey,
    dispatchLayout,
    dispatch: util.computeDispatch(dispatchLayout, o.shape, workgroupSize),
    workgroupSize,
    size: true,
    ...(o.uniforms ? { uniforms: o.uniforms } : {}),
    getUserCode: () => `
    fn main(index : i32) {
      if (index >= uniforms.size) { return; }
      ${o.body}
    }`,
  };
}

/** A kernel function's arguments, as tfjs passes them. */
export interface WebGpuKernelArgs {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
}

export type WebGpuKernel = (args: WebGpuKernelArgs) => tf.TensorInfo;

/** Registers `kernels` for 'webgpu', unless `first` is registered already (once per process). */
export function registerWebGpuKernels(
  api: Pick<typeof tf, 'registerKernel' | 'getKernel'>,
  kernels: readonly (readonly [string, WebGpuKernel])[],
): void {
  if (kernels.length === 0 || api.getKernel(kernels[0]![0], 'webgpu') !== undefined) return;
  for (const [kernelName, kernelFunc] of kernels) {
    api.registerKernel({
      kernelName,
      backendName: 'webgpu',
      kernelFunc: kernelFunc as unknown as tf.KernelFunc,
    });
  }
}

/**
 * Combines every invocation's `acc` across the workgroup (`op` of two
 * values: 'max' or 'sum') into the WGSL constant `name`, then `scale` (a
 * WGSL expression of the combined value `v`, e.g. "v / f32(uniforms.cols)").
 */
export function workgroupReduce(name: string, op: 'max' | 'min' | 'sum', scale = 'v'): string {
  const combine = op === 'sum' ? 'red[i] + red[i + s]' : `${op}(red[i], red[i + s])`;
  return `
      red[i] = acc;
      workgroupBarrier();
      for (var s = ${ROW_THREADS / 2}u; s > 0u; s = s >> 1u) {
        if (i < s) { red[i] = ${combine}; }
        workgroupBarrier();
      }
      let ${name} = ${scale.replaceAll(/\bv\b/g, 'red[0]')};
      workgroupBarrier();`;
}

/**
 * A program with one workgroup per row of `rows`. `body` (WGSL) sees row,
 * live (row < uniforms.rows: there is no early return, as every invocation
 * must reach the barriers), base (row * the row length `lengthUniform`), i
 * (this invocation's index in the row) and the workgroup array `red`.
 */
export function rowProgram(o: {
  shaderKey: string;
  variableNames: string[];
  outputShape: number[];
  rows: number;
  /** The uniform declarations, e.g. "rows : i32, cols : i32,"; they must declare rows. */
  uniforms: string;
  lengthUniform: string;
  /** The uniform of the rows' stride in the input (default: lengthUniform). */
  strideUniform?: string;
  body: string;
}) {
  return {
    variableNames: o.variableNames,
    outputShape: o.outputShape,
    shaderKey: o.shaderKey,
    dispatchLayout: { x: [0], y: [1] },
    dispatch: [Math.min(o.rows, MAX_GROUPS), Math.ceil(o.rows / MAX_GROUPS), 1],
    workgroupSize: [ROW_THREADS, 1, 1],
    uniforms: o.uniforms,
    getUserCode: () => `
    var<workgroup> red : array<f32, ${ROW_THREADS}>;
    fn main() {
      let row = i32(workgroupId.x) + i32(workgroupId.y) * ${MAX_GROUPS};
      let live = row < uniforms.rows;
      let base = row * uniforms.${o.strideUniform ?? o.lengthUniform};
      let i = localIndex;
      var acc = 0.0;
      ${o.body}
    }`,
  };
}
