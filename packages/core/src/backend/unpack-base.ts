// The kernels behind --base-dtype: a frozen W stored in fewer bytes than f32
// -> W in float32 of its storage shape, run before each matmul that reads it
// (lora/packed-base.ts makes the calls).
// - UNPACK_HALVES: packed halves (int32 [ceil(n/2)], two 16-bit values per
//   word, see lora/base-dtype.ts). webgpu: f16 through the core builtin
//   unpack2x16float (so the `shader-f16` feature is not needed), bf16 by
//   shifting into an f32's top bits.
// - UNPACK_NF4: NF4 indices (int32 [ceil(n/8)], eight nibbles per word) and
//   one absmax per 64 values (f32), bitsandbytes' layout (lora/nf4.ts): each
//   value is NF4_CODE[index] * absmax; `transposed` writes W^T for a
//   fan-in-fan-out layer (GPT-2's [in, out]), whose blocks run along `in`.
// cpu and wasm: the same decoding in TypeScript over the backend's memory
// (wasm: its heap).
import { type HalfDtype, unpackHalvesInto } from '../lora/base-dtype.js';
import { NF4_BLOCK, NF4_CODE, dequantizeNf4Into } from '../lora/nf4.js';
import { HOST_BACKENDS, HOST_MEMORY, type HostBackendName } from './host-memory.js';
import type { tf } from './tf.js';
import {
  type FlatDispatchUtil,
  type WebGpuKernelArgs as KernelArgs,
  elementwiseProgram,
} from './webgpu-kernels/rows.js';

export const UNPACK_HALVES = 'LoraFleetUnpackHalves';
export const UNPACK_NF4 = 'LoraFleetUnpackNf4';

export interface UnpackHalvesAttrs {
  dtype: HalfDtype;
  shape: number[];
}

export interface UnpackNf4Attrs {
  shape: [number, number];
  transposed: boolean;
}

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function input(args: KernelArgs, kernel: string, name: string, dtype: 'int32' | 'float32') {
  const t = args.inputs[name];
  if (t === undefined || t.dtype !== dtype) {
    throw new Error(`${kernel}: input "${name}" must be a ${dtype} tensor`);
  }
  return t;
}

function checkedHalves(args: KernelArgs): { packed: tf.TensorInfo } & UnpackHalvesAttrs {
  const packed = input(args, UNPACK_HALVES, 'packed', 'int32');
  const { dtype, shape } = (args.attrs ?? {}) as unknown as UnpackHalvesAttrs;
  if (dtype !== 'f16' && dtype !== 'bf16') {
    throw new Error(`${UNPACK_HALVES}: dtype must be f16 or bf16, got ${String(dtype)}`);
  }
  const words = size(packed.shape);
  if (Math.ceil(size(shape) / 2) !== words) {
    throw new Error(
      `${UNPACK_HALVES}: ${words} packed words cannot hold shape [${shape.join(', ')}] (${size(shape)} halves)`,
    );
  }
  return { packed, dtype, shape };
}

function checkedNf4(args: KernelArgs) {
  const packed = input(args, UNPACK_NF4, 'packed', 'int32');
  const absmax = input(args, UNPACK_NF4, 'absmax', 'float32');
  const { shape, transposed } = (args.attrs ?? {}) as unknown as UnpackNf4Attrs;
  const n = shape.length === 2 ? size(shape) : NaN;
  if (Math.ceil(n / 8) !== size(packed.shape) || Math.ceil(n / NF4_BLOCK) !== size(absmax.shape)) {
    throw new Error(
      `${UNPACK_NF4}: ${size(packed.shape)} packed words and ${size(absmax.shape)} absmax values ` +
        `cannot hold shape [${shape.join(', ')}] (need ${Math.ceil(n / 8)} and ${Math.ceil(n / NF4_BLOCK)})`,
    );
  }
  return { packed, absmax, shape, transposed: transposed === true };
}

/** The kernels on cpu and wasm, by name: decoding in TypeScript over the backend's memory. */
function hostKernels(b: HostBackendName): Record<string, (args: KernelArgs) => tf.TensorInfo> {
  return {
    [UNPACK_HALVES]: (args) => {
      const { packed, dtype, shape } = checkedHalves(args);
      const { infos, outs, ins } = HOST_MEMORY[b](
        args.backend,
        [{ shape, dtype: 'float32' }],
        [packed],
      );
      unpackHalvesInto(ins[0] as Int32Array, dtype, outs[0] as Float32Array);
      return infos[0]!;
    },
    [UNPACK_NF4]: (args) => {
      const { packed, absmax, shape, transposed } = checkedNf4(args);
      const { infos, outs, ins } = HOST_MEMORY[b](
        args.backend,
        [{ shape, dtype: 'float32' }],
        [packed, absmax],
      );
      const nf4 = { packed: ins[0] as Int32Array, absmax: ins[1] as Float32Array };
      dequantizeNf4Into(nf4, shape, transposed, outs[0] as Float32Array);
      return infos[0]!;
    },
  };
}

/** One output element per invocation: pick the word, unpack the pair, take the half. */
function halvesProgram(util: FlatDispatchUtil, shape: number[], dtype: HalfDtype) {
  const pair =
    dtype === 'f16'
      ? 'unpack2x16float(word)'
      : 'vec2<f32>(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u))';
  return elementwiseProgram(util, {
    shaderKey: `lorafleet_unpack_halves_${dtype}`,
    variableNames: ['packed'],
    shape,
    body: `
      let word = bitcast<u32>(packed[index / 2]);
      let pair = ${pair};
      setOutputAtIndex(index, select(pair.x, pair.y, index % 2 == 1));`,
  });
}

/** One output element per invocation: its place i in [out, in], its nibble, code times absmax. */
function nf4Program(util: FlatDispatchUtil, shape: [number, number], transposed: boolean) {
  const code = Array.from(NF4_CODE, (v) => v.toPrecision(9)).join(', ');
  const place = transposed ? '(index % cols) * rows + index / cols' : 'index';
  return elementwiseProgram(util, {
    shaderKey: `lorafleet_unpack_nf4_${transposed ? 't' : 'n'}`,
    variableNames: ['packed', 'absmax'],
    shape,
    uniforms: 'rows : i32, cols : i32,',
    body: `
      var code = array<f32, 16>(${code});
      let rows = uniforms.rows;
      let cols = uniforms.cols;
      let i = ${place};
      let byte = (bitcast<u32>(packed[i / 8]) >> (8u * u32((i / 2) % 4))) & 0xffu;
      let nibble = select(byte >> 4u, byte & 0xfu, i % 2 == 1);
      setOutputAtIndex(index, code[nibble] * absmax[i / ${NF4_BLOCK}]);`,
  });
}

type WebGpuRun = {
  runWebGPUProgram(
    program: object,
    inputs: tf.TensorInfo[],
    dtype: 'float32',
    uniforms?: { type: 'int32'; data: number[] }[],
  ): tf.TensorInfo;
};

function webGpuKernels(
  util: FlatDispatchUtil,
): Record<string, (args: KernelArgs) => tf.TensorInfo> {
  return {
    [UNPACK_HALVES]: (args) => {
      const { packed, dtype, shape } = checkedHalves(args);
      const program = halvesProgram(util, shape, dtype);
      return (args.backend as unknown as WebGpuRun).runWebGPUProgram(program, [packed], 'float32');
    },
    [UNPACK_NF4]: (args) => {
      const { packed, absmax, shape, transposed } = checkedNf4(args);
      const program = nf4Program(util, shape, transposed);
      const dims = shape.map((d) => ({ type: 'int32' as const, data: [d] }));
      const backend = args.backend as unknown as WebGpuRun;
      return backend.runWebGPUProgram(program, [packed, absmax], 'float32', dims);
    },
  };
}

type Api = Pick<typeof tf, 'registerKernel' | 'getKernel'>;

function register(api: Api, backendName: string, kernels: Record<string, unknown>): void {
  for (const [kernelName, kernelFunc] of Object.entries(kernels)) {
    if (api.getKernel(kernelName, backendName) !== undefined) continue;
    api.registerKernel({ kernelName, backendName, kernelFunc: kernelFunc as tf.KernelFunc });
  }
}

/** Registers the cpu and wasm kernels (tf.ts does, once). */
export function registerUnpackBase(api: Api): void {
  for (const b of HOST_BACKENDS) register(api, b, hostKernels(b));
}

/** Registers the webgpu kernels once tfjs-backend-webgpu is loaded (webgpu.ts does). */
export function registerUnpackBaseWebGpu(api: Api, util: FlatDispatchUtil): void {
  register(api, 'webgpu', webGpuKernels(util));
}
