// Dropout's mask applied in one pass on 'webgpu', drawn in the kernel from the
// counter-based hash of ops/dropout.ts (no mask is made on the CPU, uploaded
// or stored): y[i] = x[i] * (hash(hash(i ^ k1) ^ k2) >= threshold ? scale : 0).
//   LoraFleetDropout   x -> y   (attrs k1, k2, threshold: u32; scale: f32)
import { tf } from '../tf.js';
import { webGpuMatMulChoice } from './matmul-kernel.js';
import {
  elementwiseProgram,
  type FlatDispatchUtil,
  registerWebGpuKernels,
  type WebGpuKernelArgs,
  type WebGpuProgramRunner,
} from './rows.js';

export const DROPOUT = 'LoraFleetDropout';

/** The WGSL twin of random.ts's lowbias32 (u32 products wrap as Math.imul's do). */
export const LOWBIAS32_WGSL = `
    fn lowbias32(v : u32) -> u32 {
      var x = v;
      x = x ^ (x >> 16u);
      x = x * 0x7feb352du;
      x = x ^ (x >> 15u);
      x = x * 0x846ca68bu;
      x = x ^ (x >> 16u);
      return x;
    }`;

const i32Bits = (u32: number) => u32 | 0; // the same 32 bits as an int32 uniform

function kernel(util: FlatDispatchUtil) {
  return (args: WebGpuKernelArgs) => {
    const x = args.inputs.x as tf.TensorInfo;
    const { k1, k2, threshold, scale } = args.attrs as {
      k1: number;
      k2: number;
      threshold: number;
      scale: number;
    };
    if (x.dtype !== 'float32') throw new Error(`${DROPOUT}: x must be float32, got ${x.dtype}`);
    const program = elementwiseProgram(util, {
      shaderKey: 'lorafleet_dropout',
      variableNames: ['x'],
      shape: x.shape,
      uniforms: 'k1 : i32, k2 : i32, threshold : i32, scale : f32,',
      body: `
      let h = lowbias32(lowbias32(u32(index) ^ bitcast<u32>(uniforms.k1)) ^ bitcast<u32>(uniforms.k2));
      setOutputAtIndex(index, x[index] * select(0.0, uniforms.scale, h >= bitcast<u32>(uniforms.threshold)));`,
    });
    const withHash = { ...program, getUserCode: () => LOWBIAS32_WGSL + program.getUserCode() };
    const runner = args.backend as unknown as WebGpuProgramRunner;
    return runner.runWebGPUProgram(withHash, [x], 'float32', [
      { type: 'int32', data: [i32Bits(k1)] },
      { type: 'int32', data: [i32Bits(k2)] },
      { type: 'int32', data: [i32Bits(threshold)] },
      { type: 'float32', data: [scale] },
    ]);
  };
}

/** Registers LoraFleetDropout for 'webgpu' (once). */
export function registerWebGpuDropout(
  api: Pick<typeof tf, 'registerKernel' | 'getKernel'>,
  util: FlatDispatchUtil,
): void {
  registerWebGpuKernels(api, [[DROPOUT, kernel(util)]]);
}

/** True on webgpu with the project's kernels (not LORAFLEET_WEBGPU_KERNELS=stock). */
export function fusedDropoutAvailable(): boolean {
  return tf.getBackend() === 'webgpu' && webGpuMatMulChoice() === 'project';
}
