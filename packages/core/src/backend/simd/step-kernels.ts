// The wasm backend's fused step kernels on the SIMD modules
// (assembly/softmax-xent.ts, gelu-new.ts, layer-norm.ts, swiglu.ts,
// rms-norm.ts, rotary.ts): the registered LoraFleetSoftmaxXent(Grad),
// LoraFleetGeluNew(Grad), LoraFleetLayerNorm(Grad), LoraFleetSwiGlu(Grad) and
// LoraFleetRmsNorm(Grad) and LoraFleetRotary on wasm call these
// with tensors already checked and outputs already made (softmax-xent.ts,
// gelu-layer-norm.ts). Each returns false, having written nothing, where the
// SIMD modules cannot load on this backend; the caller then runs the
// TypeScript kernel over the same outputs.
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { tf } from '../tf.js';
import { simdKernels, type SimdKernels } from './instance.js';

const size = (t: tf.TensorInfo) => t.shape.reduce((a, b) => a * b, 1);

/** The kernels and a heap-address lookup, or undefined where the modules do not load. */
function heap(
  backend: tf.KernelBackend,
): { kernels: SimdKernels; at: (t: tf.TensorInfo) => number } | undefined {
  const wasm = backend as unknown as BackendWasm;
  const kernels = simdKernels(wasm);
  return kernels && { kernels, at: (t) => wasm.getMemoryOffset(t.dataId) };
}

/** nll [N], lse [N] of logits [N, V] float32 and labels [N] int32 (every label < V). */
export function simdSoftmaxXent(
  backend: tf.KernelBackend,
  logits: tf.TensorInfo,
  labels: tf.TensorInfo,
  outs: { nll: tf.TensorInfo; lse: tf.TensorInfo },
): boolean {
  const h = heap(backend);
  if (!h) return false;
  const [rows, vocab] = logits.shape as [number, number];
  h.kernels.softmaxXent(h.at(logits), h.at(labels), rows, vocab, h.at(outs.nll), h.at(outs.lse));
  return true;
}

/** [N, 2] (hit, entropy) per row of logits [N, V] float32 and labels [N] int32 (every label < V). */
export function simdTokenStats(
  backend: tf.KernelBackend,
  logits: tf.TensorInfo,
  labels: tf.TensorInfo,
  out: tf.TensorInfo,
): boolean {
  const h = heap(backend);
  if (!h) return false;
  const [rows, vocab] = logits.shape as [number, number];
  h.kernels.tokenStats(h.at(logits), h.at(labels), rows, vocab, h.at(out));
  return true;
}

/**
 * dlogits [N, V] from logits, labels (every label < V), lse [N] float32 and
 * dnll: float32 [N] or one value for every row.
 */
export function simdSoftmaxXentGrad(
  backend: tf.KernelBackend,
  inputs: { logits: tf.TensorInfo; labels: tf.TensorInfo; lse: tf.TensorInfo; dnll: tf.TensorInfo },
  dlogits: tf.TensorInfo,
): boolean {
  const { logits, labels, lse, dnll } = inputs;
  if (lse.dtype !== 'float32' || dnll.dtype !== 'float32') return false;
  const h = heap(backend);
  if (!h) return false;
  const [rows, vocab] = logits.shape as [number, number];
  const stride = size(dnll) === 1 ? 0 : 1;
  h.kernels.softmaxXentGrad(
    h.at(logits),
    h.at(labels),
    h.at(lse),
    h.at(dnll),
    stride,
    rows,
    vocab,
    h.at(dlogits),
  );
  return true;
}

/** y = gelu_new(x), elementwise, float32 of one size. */
export function simdGeluNew(
  backend: tf.KernelBackend,
  x: tf.TensorInfo,
  y: tf.TensorInfo,
): boolean {
  const h = heap(backend);
  if (!h) return false;
  h.kernels.geluNew(h.at(x), h.at(y), size(x));
  return true;
}

/** dx = dy gelu_new'(x), elementwise; false (nothing done) where dy's size is not x's. */
export function simdGeluNewGrad(
  backend: tf.KernelBackend,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  dx: tf.TensorInfo,
): boolean {
  if (size(dy) !== size(x)) return false;
  const h = heap(backend);
  if (!h) return false;
  h.kernels.geluNewGrad(h.at(x), h.at(dy), h.at(dx), size(x));
  return true;
}

/** y [rows, C], mean, rstd [rows] of x [..., C] (rows = size / C), gamma, beta [C]. */
export function simdLayerNorm(
  backend: tf.KernelBackend,
  inputs: { x: tf.TensorInfo; gamma: tf.TensorInfo; beta: tf.TensorInfo },
  eps: number,
  outs: { y: tf.TensorInfo; mean: tf.TensorInfo; rstd: tf.TensorInfo },
): boolean {
  const { x, gamma, beta } = inputs;
  const h = heap(backend);
  if (!h) return false;
  const C = size(gamma);
  const rows = size(outs.mean);
  const { y, mean, rstd } = outs;
  h.kernels.layerNorm(
    h.at(x),
    h.at(gamma),
    h.at(beta),
    eps,
    rows,
    C,
    h.at(y),
    h.at(mean),
    h.at(rstd),
  );
  return true;
}

/** y = silu(gate) up, elementwise; false (nothing done) where up's size is not gate's. */
export function simdSwiglu(
  backend: tf.KernelBackend,
  gate: tf.TensorInfo,
  up: tf.TensorInfo,
  y: tf.TensorInfo,
): boolean {
  if (size(up) !== size(gate)) return false;
  const h = heap(backend);
  if (!h) return false;
  h.kernels.swiglu(h.at(gate), h.at(up), h.at(y), size(gate));
  return true;
}

/** d(sum dy y)/d gate or / d up, elementwise; false where the three sizes differ. */
export function simdSwigluGrad(
  backend: tf.KernelBackend,
  inputs: { gate: tf.TensorInfo; up: tf.TensorInfo; dy: tf.TensorInfo },
  wrt: 'gate' | 'up',
  out: tf.TensorInfo,
): boolean {
  const { gate, up, dy } = inputs;
  if (size(up) !== size(gate) || size(dy) !== size(gate)) return false;
  const h = heap(backend);
  if (!h) return false;
  h.kernels.swigluGrad(
    h.at(gate),
    h.at(up),
    h.at(dy),
    h.at(out),
    size(gate),
    wrt === 'gate' ? 1 : 0,
  );
  return true;
}

/** y [rows, C], rstd [rows] of x [..., C] (rows = size / C) and a frozen gamma [C]. */
export function simdRmsNorm(
  backend: tf.KernelBackend,
  inputs: { x: tf.TensorInfo; gamma: tf.TensorInfo },
  eps: number,
  outs: { y: tf.TensorInfo; rstd: tf.TensorInfo },
): boolean {
  const h = heap(backend);
  if (!h) return false;
  const { x, gamma } = inputs;
  const [C, rows] = [size(gamma), size(outs.rstd)];
  h.kernels.rmsNorm(h.at(x), h.at(gamma), eps, rows, C, h.at(outs.y), h.at(outs.rstd));
  return true;
}

/** dx [rows, C] from x, gamma, rstd and dy (checked by the caller: rows x C each, rstd [rows]). */
export function simdRmsNormGrad(
  backend: tf.KernelBackend,
  inputs: { x: tf.TensorInfo; gamma: tf.TensorInfo; rstd: tf.TensorInfo; dy: tf.TensorInfo },
  dx: tf.TensorInfo,
): boolean {
  const h = heap(backend);
  if (!h) return false;
  const { x, gamma, rstd, dy } = inputs;
  const [C, rows] = [size(gamma), size(rstd)];
  h.kernels.rmsNormGrad(h.at(x), h.at(gamma), h.at(rstd), h.at(dy), rows, C, h.at(dx));
  return true;
}

/** y = x rotated by cos and sin (inverse: by their transpose); shapes checked by the caller. */
export function simdRotary(
  backend: tf.KernelBackend,
  inputs: { x: tf.TensorInfo; cos: tf.TensorInfo; sin: tf.TensorInfo },
  shape: { B: number; H: number; T: number; D: number; tableBatch: number },
  inverse: boolean,
  y: tf.TensorInfo,
): boolean {
  const h = heap(backend);
  if (!h) return false;
  const { B, H, T, D, tableBatch } = shape;
  const { x, cos, sin } = inputs;
  h.kernels.rotary(h.at(x), h.at(cos), h.at(sin), B, H, T, D, tableBatch, inverse ? 1 : 0, h.at(y));
  return true;
}

/** tfjs-backend-wasm's allocator (emscripten's malloc/free on the heap). */
interface HeapAllocator {
  _malloc(bytes: number): number;
  _free(pointer: number): void;
}

/**
 * dx [rows, C], dgamma, dbeta [C] from x, gamma, mean, rstd, dy (float32,
 * dy of x's size); the float64 column sums live in scratch malloc'ed for the call.
 */
export function simdLayerNormGrad(
  backend: tf.KernelBackend,
  inputs: readonly tf.TensorInfo[],
  outs: { dx: tf.TensorInfo; dgamma: tf.TensorInfo; dbeta: tf.TensorInfo },
): boolean {
  const [x, gamma, mean, rstd, dy] = inputs as [tf.TensorInfo, ...tf.TensorInfo[]];
  const C = size(gamma!);
  const rows = size(mean!);
  // The kernel reads rows x C of x and dy and rows of rstd: anything else goes to TypeScript.
  if (size(dy!) !== size(x) || size(rstd!) !== rows || rows * C !== size(x)) return false;
  const h = heap(backend);
  if (!h) return false;
  const allocator = (backend as unknown as BackendWasm).wasm as unknown as HeapAllocator;
  const scratch = allocator._malloc(Math.max(16, h.kernels.layerNormGradScratchBytes(C)));
  try {
    h.kernels.layerNormGrad(
      h.at(x),
      h.at(gamma!),
      h.at(mean!),
      h.at(rstd!),
      h.at(dy!),
      rows,
      C,
      h.at(outs.dx),
      h.at(outs.dgamma),
      h.at(outs.dbeta),
      scratch,
    );
  } finally {
    allocator._free(scratch);
  }
  return true;
}
