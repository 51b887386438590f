// The kernel behind --base-dtype: packed halves (int32 [ceil(n/2)], two
// 16-bit values per word, see lora/base-dtype.ts) -> float32 of a given shape.
// webgpu: a WGSL shader, f16 through the core builtin unpack2x16float (so the
// `shader-f16` feature is not needed), bf16 by shifting into an f32's top
// bits. cpu and wasm: the same decoding in TypeScript over the backend's
// memory (wasm: its heap), run once per matmul.
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { type HalfDtype, unpackHalvesInto } from '../lora/base-dtype.js';
import type { tf } from './tf.js';
import { type FlatDispatchUtil, elementwiseProgram } from './webgpu-kernels/rows.js';

export const UNPACK_HALVES = 'LoraFleetUnpackHalves';

export interface UnpackHalvesAttrs {
  dtype: HalfDtype;
  shape: number[];
}

type KernelArgs = {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
};

function checked(args: KernelArgs): { packed: tf.TensorInfo } & UnpackHalvesAttrs {
  const packed = args.inputs.packed;
  const { dtype, shape } = (args.attrs ?? {}) as unknown as UnpackHalvesAttrs;
  if (packed === undefined || packed.dtype !== 'int32') {
    throw new Error(`${UNPACK_HALVES}: input "packed" must be an int32 tensor`);
  }
  if (dtype !== 'f16' && dtype !== 'bf16') {
    throw new Error(`${UNPACK_HALVES}: dtype must be f16 or bf16, got ${String(dtype)}`);
  }
  const size = shape.reduce((a, b) => a * b, 1);
  const words = packed.shape.reduce((a, b) => a * b, 1);
  if (Math.ceil(size / 2) !== words) {
    throw new Error(
      `${UNPACK_HALVES}: ${words} packed words cannot hold shape [${shape.join(', ')}] (${size} halves)`,
    );
  }
  return { packed, dtype, shape };
}

function unpackCpu(args: KernelArgs): tf.TensorInfo {
  const { packed, dtype, shape } = checked(args);
  const backend = args.backend as unknown as {
    data: { get(id: object): { values: Int32Array } };
    makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): tf.TensorInfo;
  };
  const out = new Float32Array(shape.reduce((a, b) => a * b, 1));
  unpackHalvesInto(backend.data.get(packed.dataId).values, dtype, out);
  return backend.makeTensorInfo(shape, 'float32', out);
}

function unpackWasm(args: KernelArgs): tf.TensorInfo {
  const { packed, dtype, shape } = checked(args);
  const backend = args.backend as unknown as BackendWasm;
  // Allocate first: malloc may grow the heap and detach older views.
  const out = backend.makeOutput(shape, 'float32');
  const outVals = backend.typedArrayFromHeap(out) as Float32Array;
  unpackHalvesInto(backend.typedArrayFromHeap(packed) as Int32Array, dtype, outVals);
  return out;
}

/** One output element per invocation: pick the word, unpack the pair, take the half. */
function unpackProgram(util: FlatDispatchUtil, shape: number[], dtype: HalfDtype) {
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

function unpackWebGpu(util: FlatDispatchUtil) {
  return (args: KernelArgs): tf.TensorInfo => {
    const { packed, dtype, shape } = checked(args);
    const backend = args.backend as unknown as {
      runWebGPUProgram(program: object, inputs: tf.TensorInfo[], dtype: 'float32'): tf.TensorInfo;
    };
    return backend.runWebGPUProgram(unpackProgram(util, shape, dtype), [packed], 'float32');
  };
}

/** Registers the cpu and wasm kernels (tf.ts does, once). */
export function registerUnpackHalves(api: Pick<typeof tf, 'registerKernel' | 'getKernel'>): void {
  for (const [backendName, kernelFunc] of [
    ['cpu', unpackCpu],
    ['wasm', unpackWasm],
  ] as const) {
    if (api.getKernel(UNPACK_HALVES, backendName) !== undefined) continue;
    api.registerKernel({
      kernelName: UNPACK_HALVES,
      backendName,
      kernelFunc: kernelFunc as unknown as tf.KernelFunc,
    });
  }
}

/** Registers the webgpu kernel once tfjs-backend-webgpu is loaded (webgpu.ts does). */
export function registerUnpackHalvesWebGpu(
  api: Pick<typeof tf, 'registerKernel' | 'getKernel'>,
  util: FlatDispatchUtil,
): void {
  if (api.getKernel(UNPACK_HALVES, 'webgpu') !== undefined) return;
  api.registerKernel({
    kernelName: UNPACK_HALVES,
    backendName: 'webgpu',
    kernelFunc: unpackWebGpu(util) as unknown as tf.KernelFunc,
  });
}
