// tfjs-backend-wasm 4.22 multiplies fast (XNNPACK) only a batch of one with
// neither operand transposed. With transposeA/transposeB it falls back to a
// slow path (measured here on [1024, 1024] x [256, 1024]^T: 2.2 GFLOP/s with
// the flag, 27 with an explicit transpose; 0.6 vs 20 for A^T B), and batched
// products (attention's [B*H, T, D]) run at ~1 GFLOP/s whatever the flags.
// The project's SIMD kernel (simd/batch-matmul.ts) beats XNNPACK on the
// step's 2-D products too (~53 vs ~35 GFLOP/s on [1024, 256] x [256, 768]
// and the rest of the tiny GPT-2 step's shapes, 1.46x over all of them, the
// same bits; docs/wasm-simd-kernels.md), so this wrapper routes every float32
// BatchMatMul, any batch and any transpose flags, to it, except 2-D products
// of under 64 rows without flags (XNNPACK); tfjs's kernel keeps what the SIMD
// kernel refuses (other dtypes, products too large for its i32 offsets), with
// an explicit transpose for a flag.
// Registered once, from tf.ts.
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { simdBatchMatMul } from './simd/batch-matmul.js';
import type { tf } from './tf.js';

type KernelFunc = (args: {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
}) => tf.TensorInfo | tf.TensorInfo[];

const BATCH_MAT_MUL = 'BatchMatMul';

/** Swaps the last two axes of `x` with the backend's own Transpose kernel. */
function transposeLastTwo(
  x: tf.TensorInfo,
  backend: tf.KernelBackend,
  transpose: KernelFunc,
): tf.TensorInfo {
  const rank = x.shape.length;
  const perm = [...Array(rank).keys()];
  [perm[rank - 2], perm[rank - 1]] = [rank - 1, rank - 2];
  return transpose({ inputs: { x }, backend, attrs: { perm } }) as tf.TensorInfo;
}

/**
 * Plain 2-D products of under 64 rows (generation: a row per prompt) are
 * faster on XNNPACK, which keeps W packed between calls where the SIMD kernel
 * packs it every call: [4, 768] x [768, 3072] 0.50 vs 2.27 ms, 64 rows 7.7 vs
 * 7.3 (test/bench/wasm-matmul/step-shapes.mjs has the step's shapes).
 */
export function prefersXnnpack(
  aShape: readonly number[],
  transposeA: boolean,
  transposeB: boolean,
): boolean {
  return !transposeA && !transposeB && aShape.length === 2 && aShape[0]! < 64;
}

/**
 * Replaces wasm's BatchMatMul by the router above (the original kernel never
 * sees a transpose flag).
 * Returns false when the backend or kernels are not there (nothing changed).
 */
export function registerWasmMatMul(
  api: Pick<typeof tf, 'registerKernel' | 'getKernel' | 'unregisterKernel'>,
): boolean {
  const original = api.getKernel(BATCH_MAT_MUL, 'wasm');
  const transpose = api.getKernel('Transpose', 'wasm');
  if (!original || !transpose || (original as { lorafleetWrapped?: boolean }).lorafleetWrapped)
    return false;
  const matmul = original.kernelFunc as KernelFunc;
  const transposeFunc = transpose.kernelFunc as KernelFunc;
  const kernelFunc: KernelFunc = ({ inputs, backend, attrs }) => {
    const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const transposeA = Boolean(attrs?.transposeA);
    const transposeB = Boolean(attrs?.transposeB);
    const simd = prefersXnnpack(a.shape, transposeA, transposeB)
      ? undefined
      : simdBatchMatMul(a, b, transposeA, transposeB, backend as unknown as BackendWasm);
    if (simd !== undefined) return simd;
    if (!transposeA && !transposeB) return matmul({ inputs, backend, ...(attrs ? { attrs } : {}) });
    const a2 = transposeA ? transposeLastTwo(a, backend, transposeFunc) : a;
    const b2 = transposeB ? transposeLastTwo(b, backend, transposeFunc) : b;
    try {
      return matmul({
        inputs: { a: a2, b: b2 },
        backend,
        attrs: { ...attrs, transposeA: false, transposeB: false },
      });
    } finally {
      if (a2 !== a) backend.disposeData(a2.dataId);
      if (b2 !== b) backend.disposeData(b2.dataId);
    }
  };
  api.unregisterKernel(BATCH_MAT_MUL, 'wasm');
  api.registerKernel({
    kernelName: BATCH_MAT_MUL,
    backendName: 'wasm',
    kernelFunc: kernelFunc as tf.KernelFunc,
    ...(original.setupFunc ? { setupFunc: original.setupFunc } : {}),
    ...(original.disposeFunc ? { disposeFunc: original.disposeFunc } : {}),
  });
  // `stock` keeps tfjs's own kernel reachable, for benchmarks that compare with it.
  Object.assign(api.getKernel(BATCH_MAT_MUL, 'wasm')!, { lorafleetWrapped: true, stock: matmul });
  return true;
}
