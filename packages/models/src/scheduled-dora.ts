// A DoRA-adapted linear layer (use_dora) in a hand-scheduled step: the
// math of core's lora/dora.ts, recorded with the plan's kernels around the
// fused LoRA linear. g = m / n per output, n = ||W + s B A|| per output row
// (in W's storage orientation), computed once per micro-batch from the
// current A and B and held constant in backward, as the tape holds it
// (PEFT detaches it). scheduled-linear.ts calls these for an adapter with a
// magnitude.
import type { LoraAdapter, LoraLinear, PlanDropout, PlanOps, tf } from '@lorafleet/core';
import type { StepIo } from './scheduled-step.js';

type Info = tf.TensorInfo;

/** What DoRA's backward needs: n [out], and z (+ z2) [N, out], the output's derivative by g. */
export interface DoraSaved {
  n: Info;
  z: Info;
  z2: Info | null;
}

/**
 * y = x W^T + b + (g - 1) x' W^T + g s x' A^T B^T, x' = xd (x after LoRA
 * dropout, or x itself), h = xd A^T [N, r] already recorded; `weight` is W
 * in f32 as stored.
 */
export function doraForward(
  ops: PlanOps,
  io: StepIo,
  layer: LoraLinear,
  adapter: LoraAdapter,
  weight: Info,
  x: Info, // [N, in]
  xd: Info,
  h: Info,
  drop: PlanDropout | null,
): { y: Info; dora: DoraSaved } {
  const [a, b, m] = [io.param(adapter.a), io.param(adapter.b), io.param(adapter.magnitude!)];
  const s = adapter.scaling;
  const delta = layer.fanInFanOut
    ? ops.mm(a, b, { transposeA: true, transposeB: true, alpha: s }) // s A^T B^T [in, out]
    : ops.mm(b, a, { alpha: s }); // s B A [out, in]
  const n = ops.doraNorms(weight, delta, layer.fanInFanOut); // [out]
  const w = { transposeB: !layer.fanInFanOut };
  if (!drop) {
    // x' = x: y = g (x W^T + s h B^T) + b
    const z = ops.mm(x, weight, { ...w, beta: s, transposeL: true }, { h, l: b }); // [N, out]
    return { y: ops.doraScale(z, m, n, 0, layer.bias), dora: { n, z, z2: null } };
  }
  const base = ops.mm(x, weight, w, { bias: layer.bias }); // x W^T + b
  const dropped = ops.mm(xd, weight, w); // x' W^T
  const lora = ops.mm(h, b, { transposeB: true, alpha: s }); // s h B^T
  return { y: ops.doraMix(base, dropped, lora, m, n), dora: { n, z: dropped, z2: lora } };
}

/**
 * dm, dA and dB into `grads`; dx [N, in] when `weight` is given (W in f32
 * as stored, made on demand: nothing below may need dx).
 */
export function doraBackward(
  ops: PlanOps,
  io: StepIo,
  layer: LoraLinear,
  adapter: LoraAdapter,
  dy: Info, // [N, out]
  saved: { xd: Info; h: Info; drop: PlanDropout | null; dora: DoraSaved },
  grads: Map<tf.Variable, Info>,
  weight: (() => Info) | null,
): Info | null {
  const { n, z, z2 } = saved.dora;
  const [a, b, m] = [io.param(adapter.a), io.param(adapter.b), io.param(adapter.magnitude!)];
  const s = adapter.scaling;
  grads.set(adapter.magnitude!, ops.doraMagnitudeGrad(dy, z, z2, n)); // [out]
  const dyg = ops.doraScale(dy, m, n, 0); // dy g [N, out]
  const dh = ops.mm(dyg, b, { alpha: s }); // [N, r]
  grads.set(adapter.a, ops.mm(dh, saved.xd, { transposeA: true })); // [r, in]
  grads.set(adapter.b, ops.mm(dyg, saved.h, { transposeA: true, alpha: s })); // [out, r]
  if (!weight) return null;
  const w = weight();
  const wT = { transposeB: layer.fanInFanOut };
  if (!saved.drop) return ops.mm(dyg, w, wT, { h: dh, l: a }); // g dy W^T + dh A
  // dx = dy W^T + dropout((g - 1) dy W^T + dh A), the forward's mask
  const inner = ops.mm(ops.doraScale(dy, m, n, -1), w, wT, { h: dh, l: a }); // [N, in]
  return ops.add(ops.mm(dy, w, wT), ops.dropout(inner, saved.drop));
}
