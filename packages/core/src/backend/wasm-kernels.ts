// Kernels that tfjs-backend-wasm 4.22 lacks and that training needs, written in
// TypeScript on the wasm backend's heap. tf.ts registers them (registration
// happens in that one module); this file imports tfjs for types only, so there
// is no import cycle at run time.
//
// Missing on wasm (compared with cpu) in 4.22: UnsortedSegmentSum, Complex,
// ComplexAbs, Real, Imag, FFT, IFFT, Conv2DBackpropFilter,
// DepthwiseConv2dNativeBackpropFilter/Input, Einsum, Draw, Ragged*,
// StaticRegexReplace. Of those only UnsortedSegmentSum (the gradient of
// gather, i.e. of an embedding lookup) is on the path of a GPT-2 training step.
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { tf } from './tf.js';

export const UNSORTED_SEGMENT_SUM = 'UnsortedSegmentSum';

/**
 * UnsortedSegmentSum on the wasm backend, TensorFlow semantics:
 * out[s, ...] = sum of x[i, ...] over the (flattened) positions i of
 * `segmentIds` with segmentIds[i] == s. `segmentIds` (int32) has a prefix of
 * x's shape; the output is [numSegments, ...x.shape.slice(segmentIds.rank)].
 * Ids outside [0, numSegments) are dropped, segments without ids are zero.
 *
 * Rows are summed per segment in float64, in increasing i (a stable counting
 * sort groups them), then rounded once into the output's heap memory: the same
 * result as the cpu backend's mask-and-sum, and independent of how many rows
 * share a segment. Extra memory: two Int32Arrays over the ids and one
 * Float64Array the size of one row.
 */
export function unsortedSegmentSumWasm(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo {
  const backend = args.backend as unknown as BackendWasm;
  const { x, segmentIds, numSegments, innerShape } = checkedArgs(args);
  const inner = innerShape.reduce((a, b) => a * b, 1);
  // Allocate first: malloc may grow the wasm memory, which detaches every view
  // of the old buffer, so the views below are taken afterwards.
  const out = backend.makeOutput([numSegments, ...innerShape], x.dtype);
  const outVals = backend.typedArrayFromHeap(out) as Float32Array | Int32Array;
  if (outVals.length === 0) return out;
  const ids = backend.typedArrayFromHeap(segmentIds) as Int32Array;
  const xVals = backend.typedArrayFromHeap(x) as Float32Array | Int32Array;
  const { start, order } = groupBySegment(ids, numSegments);
  const acc = new Float64Array(inner);
  for (let s = 0; s < numSegments; s++) {
    const lo = start[s]!;
    const hi = start[s + 1]!;
    const o = s * inner;
    if (hi === lo) {
      outVals.fill(0, o, o + inner);
    } else if (hi - lo === 1) {
      const xo = order[lo]! * inner;
      outVals.set(xVals.subarray(xo, xo + inner), o);
    } else {
      acc.fill(0);
      for (let k = lo; k < hi; k++) {
        const xo = order[k]! * inner;
        for (let j = 0; j < inner; j++) acc[j]! += xVals[xo + j]!;
      }
      outVals.set(acc, o);
    }
  }
  return out;
}

/** The kernel's inputs and attributes, refused with a message naming what is wrong. */
function checkedArgs(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }): {
  x: tf.TensorInfo;
  segmentIds: tf.TensorInfo;
  numSegments: number;
  /** x's shape after the ids' dimensions: the shape of one summed row. */
  innerShape: number[];
} {
  const x = args.inputs.x;
  const segmentIds = args.inputs.segmentIds;
  const numSegments = Number(args.attrs?.numSegments);
  if (x === undefined || segmentIds === undefined) {
    throw new Error('UnsortedSegmentSum (wasm): inputs x and segmentIds are required');
  }
  if (!Number.isInteger(numSegments) || numSegments < 0) {
    throw new Error(
      `UnsortedSegmentSum (wasm): numSegments must be an integer >= 0, got ${String(args.attrs?.numSegments)}`,
    );
  }
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new Error(`UnsortedSegmentSum (wasm): x must be float32 or int32, got ${x.dtype}`);
  }
  if (segmentIds.dtype !== 'int32') {
    throw new Error(`UnsortedSegmentSum (wasm): segmentIds must be int32, got ${segmentIds.dtype}`);
  }
  const idsRank = segmentIds.shape.length;
  if (
    idsRank < 1 ||
    idsRank > x.shape.length ||
    segmentIds.shape.some((d, k) => d !== x.shape[k])
  ) {
    throw new Error(
      `UnsortedSegmentSum (wasm): segmentIds shape [${segmentIds.shape.join(', ')}] ` +
        `must be a non-empty prefix of x shape [${x.shape.join(', ')}]`,
    );
  }
  return { x, segmentIds, numSegments, innerShape: x.shape.slice(idsRank) };
}

/**
 * A stable counting sort of the valid positions by segment: the positions of
 * segment s are order[start[s] .. start[s + 1]), in increasing i.
 */
function groupBySegment(
  ids: Int32Array,
  numSegments: number,
): { start: Int32Array; order: Int32Array } {
  const start = new Int32Array(numSegments + 1);
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i]!;
    if (s >= 0 && s < numSegments) start[s + 1]!++;
  }
  for (let s = 0; s < numSegments; s++) start[s + 1]! += start[s]!;
  const order = new Int32Array(start[numSegments]!);
  const cursor = start.slice(0, numSegments);
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i]!;
    if (s >= 0 && s < numSegments) order[cursor[s]!++] = i;
  }
  return { start, order };
}

export const unsortedSegmentSumWasmConfig: tf.KernelConfig = {
  kernelName: UNSORTED_SEGMENT_SUM,
  backendName: 'wasm',
  kernelFunc: unsortedSegmentSumWasm as unknown as tf.KernelFunc,
};

const WASM_KERNELS: readonly tf.KernelConfig[] = [unsortedSegmentSumWasmConfig];

/**
 * Registers the project's wasm kernels that tfjs does not already provide
 * (a later tfjs with its own kernel keeps it). Idempotent; returns the names
 * registered by this call.
 */
export function registerWasmKernels(
  api: Pick<typeof tf, 'registerKernel' | 'getKernel'>,
): string[] {
  const added: string[] = [];
  for (const config of WASM_KERNELS) {
    if (api.getKernel(config.kernelName, config.backendName) !== undefined) continue;
    api.registerKernel(config);
    added.push(config.kernelName);
  }
  return added;
}
