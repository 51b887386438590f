// A LoRA linear layer in a hand-scheduled step (scheduled-step.ts), forward
// and backward, as the fused LoRA linear computes it on webgpu
// (core's lora/fused-linear.ts): the forward in one dispatch with the rank-r
// epilogue, the backward's dx in one, dA and dB from the small intermediates,
// no dW (W is frozen). W stored packed (--base-dtype bf16 / f16 / nf4) is
// unpacked into a transient f32 buffer before each product that reads it
// (forward, and again for dx), as the tape does: the plan's allocator
// reuses that buffer once the product is recorded, so about one layer's
// f32 W is alive at a time. A DoRA adapter (a magnitude) takes
// scheduled-dora.ts's path. Shared by the families' recipes.
import type {
  LoraEmbedding,
  LoraLinear,
  PlanDropout,
  PlanOps,
  TrainableParameters,
  tf,
} from '@lorafleet/core';
import type { StepIo } from './scheduled-step.js';
import { type DoraSaved, doraBackward, doraForward } from './scheduled-dora.js';

type Info = tf.TensorInfo;

/**
 * A linear layer's input, its LoRA input xd (x, or dropout(x) with LoRA
 * dropout, whose mask `drop` is applied again in backward), LoRA
 * intermediate h = xd A^T [N, r] (null without an adapter) and DoRA's
 * saved values (null without DoRA).
 */
export interface LinearSaved {
  x: Info;
  xd: Info;
  h: Info | null;
  drop: PlanDropout | null;
  dora: DoraSaved | null;
}

/** W in f32 as stored ([out, in], or [in, out] for fan-in-fan-out): the variable, or unpacked from its packed form. */
function baseWeight(ops: PlanOps, layer: LoraLinear): Info {
  const packed = layer.packedBase;
  return packed ? ops.unpackBase(packed.unpack) : layer.weight;
}

/**
 * y = x op(W) + b (+ s dropout(x) A^T B^T with an adapter) (+ `residual`
 * [N, out], added in the same dispatch: a residual stream folded into the
 * branch's last product), W in its storage orientation; `dropoutSeed` gives
 * the layer's LoRA dropout seed from the micro-batch's, as the model's
 * forward derives it.
 */
export function linear(
  ops: PlanOps,
  io: StepIo,
  layer: LoraLinear,
  x: Info,
  dropoutSeed: (batchSeed: number) => number,
  residual: Info | null = null,
): { y: Info; saved: LinearSaved } {
  const adapter = layer.activeAdapter;
  const w = { transposeB: !layer.fanInFanOut };
  if (!adapter)
    return {
      y: ops.mm(x, baseWeight(ops, layer), w, { bias: layer.bias, residual }),
      saved: { x, xd: x, h: null, drop: null, dora: null },
    };
  const drop = io.dropoutSite(adapter.settings.dropout, dropoutSeed);
  const xd = drop ? ops.dropout(x, drop) : x; // [N, in]
  const h = ops.mm(xd, io.param(adapter.a), { transposeB: true }); // [N, r]
  if (adapter.magnitude) {
    const weight = baseWeight(ops, layer);
    const { y, dora } = doraForward(ops, io, layer, adapter, weight, x, xd, h, drop);
    return { y: residual ? ops.add(residual, y) : y, saved: { x, xd, h, drop, dora } };
  }
  const l = io.param(adapter.b); // [out, r]
  const y = ops.mm(
    x,
    baseWeight(ops, layer),
    { ...w, beta: adapter.scaling, transposeL: true },
    { bias: layer.bias, h, l, residual },
  );
  return { y, saved: { x, xd, h, drop, dora: null } };
}

/** dx of the linear layer (null when `dx` is false); dA and dB into `grads` when it has an adapter. */
export function linearGrad(
  ops: PlanOps,
  io: StepIo,
  layer: LoraLinear,
  dy: Info, // [N, out]
  saved: LinearSaved,
  grads: Map<tf.Variable, Info>,
  dx = true,
): Info | null {
  const adapter = layer.activeAdapter;
  const wT = { transposeB: layer.fanInFanOut };
  if (!adapter || !saved.h) return dx ? ops.mm(dy, baseWeight(ops, layer), wT) : null;
  if (saved.dora) {
    const weight = dx ? () => baseWeight(ops, layer) : null;
    const dora = { xd: saved.xd, h: saved.h, drop: saved.drop, dora: saved.dora };
    return doraBackward(ops, io, layer, adapter, dy, dora, grads, weight);
  }
  const s = adapter.scaling;
  const dh = ops.mm(dy, io.param(adapter.b), { alpha: s }); // [N, r]
  grads.set(adapter.a, ops.mm(dh, saved.xd, { transposeA: true })); // [r, in]
  grads.set(adapter.b, ops.mm(dy, saved.h, { transposeA: true, alpha: s })); // [out, r]
  if (!dx) return null; // nothing below needs dx
  const weight = baseWeight(ops, layer);
  if (!saved.drop) return ops.mm(dy, weight, wT, { h: dh, l: io.param(adapter.a) }); // dy W^T + dh A [N, in]
  // LoRA dropout masks the rank-r branch only: dx = dy W^T + dropout(dh A), the same mask.
  const lora = ops.dropout(ops.mm(dh, io.param(adapter.a)), saved.drop); // [N, in]
  return ops.add(ops.mm(dy, weight, wT), lora);
}

/**
 * Why a recipe that adapts linear layers cannot train these adapters with
 * `params` (null: evaluate with them), or null: the settings every family's
 * recipe shares.
 */
export function adaptersUnsupported(
  linears: readonly LoraLinear[],
  embeddings: readonly LoraEmbedding[],
  params: TrainableParameters | null,
): string | null {
  for (const e of embeddings) {
    if (e.activeAdapter)
      return `the token embedding has an adapter (${e.name}); the scheduled step adapts linear layers only`;
  }
  const adapters = new Set<tf.Variable>();
  for (const layer of linears) {
    const a = layer.activeAdapter;
    if (layer.merged) return `${layer.name}: an adapter is merged`;
    if (!a) continue;
    adapters.add(a.a).add(a.b);
    if (a.magnitude) adapters.add(a.magnitude);
  }
  for (const slot of params?.slots ?? []) {
    if (!adapters.has(slot.variable))
      return `${slot.name} is trained, and the scheduled step trains only the linear layers' active adapters`;
  }
  return null;
}
