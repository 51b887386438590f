// Kernels written in TypeScript that run over a backend's own memory: the cpu
// backend's arrays, or the wasm backend's heap (no copy in or out). One
// accessor per backend; the kernels (softmax-xent.ts, gelu-kernels.ts,
// layer-norm-kernels.ts) are the same code on both.
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { tf } from './tf.js';

export type HostBackendName = 'cpu' | 'wasm';
export type HostDtype = 'float32' | 'int32';
export type HostArray = Float32Array | Int32Array;

export interface OutputSpec {
  shape: number[];
  dtype: HostDtype;
}

export interface HostBuffers {
  /** What the kernel returns, in the order of the output specs. */
  infos: tf.TensorInfo[];
  /** Writable views of the outputs. */
  outs: HostArray[];
  /** Views of the inputs (read them, never write). */
  ins: HostArray[];
}

type HostMemory = (
  backend: tf.KernelBackend,
  outputs: readonly OutputSpec[],
  inputs: readonly tf.TensorInfo[],
) => HostBuffers;

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const ARRAYS = { float32: Float32Array, int32: Int32Array } as const;

interface CpuBackend {
  data: { get(id: object): { values: HostArray } };
  makeTensorInfo(shape: number[], dtype: HostDtype, values: HostArray): tf.TensorInfo;
}

export const HOST_MEMORY: Record<HostBackendName, HostMemory> = {
  // The cpu backend keeps a plain typed array per tensor and adopts ours.
  cpu: (backend, outputs, inputs) => {
    const cpu = backend as unknown as CpuBackend;
    const outs = outputs.map((o) => new ARRAYS[o.dtype](size(o.shape)));
    return {
      infos: outputs.map((o, i) => cpu.makeTensorInfo(o.shape, o.dtype, outs[i]!)),
      outs,
      ins: inputs.map((t) => cpu.data.get(t.dataId).values),
    };
  },
  // Every output is allocated before any view is taken: malloc may grow the
  // heap, which detaches the views of the old buffer.
  wasm: (backend, outputs, inputs) => {
    const wasm = backend as unknown as BackendWasm;
    const infos = outputs.map((o) => wasm.makeOutput(o.shape, o.dtype));
    return {
      infos,
      outs: infos.map((t) => wasm.typedArrayFromHeap(t) as HostArray),
      ins: inputs.map((t) => wasm.typedArrayFromHeap(t) as HostArray),
    };
  },
};

export const HOST_BACKENDS: readonly HostBackendName[] = ['cpu', 'wasm'];
