// tfjs-backend-wasm 4.22's Slice reads its input with backend.readSync, which
// copies the whole input out of the heap (HEAPU8.slice) before taking the
// slice; its SplitV calls Slice once per piece. GPT-2's q/k/v split of
// c_attn's [B, T, 3C] output therefore copied that tensor three times, and the
// copies (fresh ArrayBuffers of several MB) took 80 ms of a 970 ms step
// (issue 17's profile). These kernels read the input through a view of the
// heap instead: one copy, of the slice itself.
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { tf } from './tf.js';

type Api = Pick<
  typeof tf,
  'registerKernel' | 'getKernel' | 'unregisterKernel' | 'slice_util' | 'backend_util' | 'util'
>;
type Heap = Float32Array | Int32Array | Uint8Array;

/** Copies x[begin : begin + size] (x of `shape`) into out, in row-major order. */
export function copySlice(
  x: Heap,
  shape: readonly number[],
  begin: readonly number[],
  size: readonly number[],
  out: Heap,
): void {
  const rank = shape.length;
  if (rank === 0) {
    out[0] = x[0]!;
    return;
  }
  const strides = new Array<number>(rank);
  strides[rank - 1] = 1;
  for (let d = rank - 2; d >= 0; d--) strides[d] = strides[d + 1]! * shape[d + 1]!;
  // The trailing axes taken whole join the last one into one contiguous run.
  let inner = rank - 1;
  let run = size[inner]!;
  while (inner > 0 && size[inner] === shape[inner]) run *= size[--inner]!;
  let base = 0;
  for (let d = 0; d < rank; d++) base += begin[d]! * strides[d]!;
  let outer = 1;
  for (let d = 0; d < inner; d++) outer *= size[d]!;
  const index = new Array<number>(inner).fill(0); // position among the outer axes
  let o = 0;
  for (let n = 0; n < outer; n++) {
    let src = base;
    for (let d = 0; d < inner; d++) src += index[d]! * strides[d]!;
    if (run >= 16) out.set(x.subarray(src, src + run), o);
    else for (let k = 0; k < run; k++) out[o + k] = x[src + k]!;
    o += run;
    for (let d = inner - 1; d >= 0; d--) {
      if (++index[d]! < size[d]!) break;
      index[d] = 0;
    }
  }
}

/** Slice through heap views; the output is made first, so no view is stale when copied. */
function sliceInHeap(
  backend: BackendWasm,
  x: tf.TensorInfo,
  begin: number[],
  size: number[],
): tf.TensorInfo {
  const out = backend.makeOutput(size, x.dtype);
  if (size.some((s) => s === 0)) return out;
  const xs = backend.typedArrayFromHeap(x) as Heap;
  const os = backend.typedArrayFromHeap(out) as Heap;
  copySlice(xs, x.shape, begin, size, os);
  return out;
}

type Args = {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
};

/** Replaces wasm's Slice and SplitV (strings keep the originals). Idempotent; returns the names replaced. */
export function registerWasmSlice(api: Api): string[] {
  const slice = (args: Args): tf.TensorInfo => {
    const x = args.inputs.x!;
    const attrs = args.attrs as unknown as { begin: number | number[]; size: number | number[] };
    const [begin, size] = api.slice_util.parseSliceParams(x as tf.Tensor, attrs.begin, attrs.size);
    return sliceInHeap(args.backend as unknown as BackendWasm, x, begin!, size!);
  };
  const splitV = (args: Args): tf.TensorInfo[] => {
    const x = args.inputs.x!;
    const attrs = args.attrs as unknown as { numOrSizeSplits: number | number[]; axis: number };
    const axis = api.util.parseAxisParam(attrs.axis, x.shape)[0]!;
    const sizes = api.backend_util.prepareSplitSize(x as tf.Tensor, attrs.numOrSizeSplits, axis);
    const begin = new Array<number>(x.shape.length).fill(0);
    return sizes.map((s) => {
      const size = [...x.shape];
      size[axis] = s;
      const piece = sliceInHeap(args.backend as unknown as BackendWasm, x, [...begin], size);
      begin[axis] = begin[axis]! + s;
      return piece;
    });
  };
  const replaced: string[] = [];
  for (const [name, own] of [
    ['Slice', slice],
    ['SplitV', splitV],
  ] as const) {
    const original = api.getKernel(name, 'wasm');
    if (!original || (original as { lorafleetHeapViews?: boolean }).lorafleetHeapViews) continue;
    const stock = original.kernelFunc;
    const kernelFunc = (args: Args) =>
      args.inputs.x?.dtype === 'string' || args.inputs.x?.dtype === 'complex64'
        ? stock(args as unknown as Parameters<tf.KernelFunc>[0])
        : own(args);
    api.unregisterKernel(name, 'wasm');
    api.registerKernel({
      kernelName: name,
      backendName: 'wasm',
      kernelFunc: kernelFunc as unknown as tf.KernelFunc,
    });
    Object.assign(api.getKernel(name, 'wasm')!, { lorafleetHeapViews: true });
    replaced.push(`${name} (wasm, heap views)`);
  }
  return replaced;
}
