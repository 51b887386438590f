// BatchMatMul through the project's SIMD kernel (assembly/batch-matmul.ts):
// batched products (attention's [B*H, T, D], ~1 GFLOP/s on tfjs-backend-wasm
// 4.22 against ~25-45 here) and 2-D ones (~53 GFLOP/s against XNNPACK's
// ~35-39 on the step's shapes), with any transpose flags, so the backward
// pass needs no explicit transpose. wasm-matmul.ts routes.
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { tf } from '../tf.js';
import { simdKernels } from './instance.js';

/** tfjs-backend-wasm's allocator (emscripten's malloc/free on the heap). */
interface HeapAllocator {
  _malloc(bytes: number): number;
  _free(pointer: number): void;
}

/** What the SIMD kernel multiplies: shapes reduced to [batch, m, k] x [batch, k, n]. */
export interface BatchedProduct {
  /** Output shape: broadcast batch dims, then [m, n]. */
  outShape: number[];
  batch: number;
  m: number;
  n: number;
  k: number;
  /** Floats between consecutive matrices of A (0: one A for every batch). */
  aBatchStride: number;
  bBatchStride: number;
}

function size(shape: readonly number[]): number {
  return shape.reduce((x, y) => x * y, 1);
}

/** Broadcast of two batch shapes (numpy rules), or undefined where they do not broadcast. */
function broadcastShape(a: readonly number[], b: readonly number[]): number[] | undefined {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const x = a[a.length - rank + i] ?? 1;
    const y = b[b.length - rank + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return undefined;
    out.push(x === 1 ? y : x);
  }
  return out;
}

/**
 * The product `op(a) op(b)` as the SIMD kernel runs it, or undefined where it
 * should not: not float32, an empty operand, mismatched inner dims (tfjs reports those), or a broadcast that is
 * not "one matrix against a batch" (e.g. [2, 1] x [1, 3] batches).
 */
export function batchedProduct(
  a: Pick<tf.TensorInfo, 'shape' | 'dtype'>,
  b: Pick<tf.TensorInfo, 'shape' | 'dtype'>,
  transposeA: boolean,
  transposeB: boolean,
): BatchedProduct | undefined {
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return undefined;
  if (a.shape.length < 2 || b.shape.length < 2) return undefined;
  const [a1, a2] = a.shape.slice(-2) as [number, number];
  const [b1, b2] = b.shape.slice(-2) as [number, number];
  const [m, k] = transposeA ? [a2, a1] : [a1, a2];
  const [kB, n] = transposeB ? [b2, b1] : [b1, b2];
  if (k !== kB || m === 0 || n === 0 || k === 0) return undefined;
  const batchShape = broadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  if (batchShape === undefined) return undefined;
  const batch = size(batchShape);
  const batchA = size(a.shape.slice(0, -2));
  const batchB = size(b.shape.slice(0, -2));
  if ((batchA !== batch && batchA !== 1) || (batchB !== batch && batchB !== 1)) {
    return undefined;
  }
  return {
    outShape: [...batchShape, m, n],
    batch,
    m,
    n,
    k,
    aBatchStride: batchA === 1 ? 0 : m * k,
    bBatchStride: batchB === 1 ? 0 : k * n,
  };
}

/**
 * Runs BatchMatMul on the SIMD kernel, or returns undefined (nothing done)
 * where batchedProduct declines or the kernels cannot load on this backend.
 * The output is a new tensor in the backend's heap; the packing scratch is
 * malloc'ed from the same heap for the call.
 */
export function simdBatchMatMul(
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  backend: BackendWasm,
): tf.TensorInfo | undefined {
  const product = batchedProduct(a, b, transposeA, transposeB);
  if (product === undefined) return undefined;
  const kernels = simdKernels(backend);
  if (kernels === undefined) return undefined;
  const { outShape, batch, m, n, k, aBatchStride, bBatchStride } = product;
  // i32 in the kernel: a product whose packed operands pass 2 GiB stays on tfjs.
  const scratchBytes = kernels.batchMatMulScratchBytes(m, n, k);
  if (!(scratchBytes > 0)) return undefined;
  const heap = backend.wasm as unknown as HeapAllocator;
  const out = backend.makeOutput(outShape, 'float32');
  const scratch = heap._malloc(scratchBytes);
  try {
    kernels.batchMatMul(
      backend.getMemoryOffset(a.dataId),
      backend.getMemoryOffset(b.dataId),
      backend.getMemoryOffset(out.dataId),
      scratch,
      batch,
      m,
      n,
      k,
      aBatchStride,
      bBatchStride,
      transposeA ? 1 : 0,
      transposeB ? 1 : 0,
    );
  } finally {
    heap._free(scratch);
  }
  return out;
}
