// The Llama family's hand-scheduled LoRA step (scheduled-step.ts; Llama,
// Mistral, Qwen2, Qwen3, Gemma): model.ts's forward and backward as explicit
// kernels, for the linear layers' adapters, with LoRA and attention dropout
// (the tape's masks) and Mistral's sliding window. Per layer:
// RMSNorm, q/k/v projections (Qwen3's per-head q/k RMSNorm), heads split
// with grouped-query keys and values repeated in the split, rotary
// embedding, fused causal attention, heads merge, o_proj, residual; RMSNorm,
// gate/up projections, SwiGLU (Gemma: GeGLU), down_proj, residual. Gemma's
// norms multiply by 1 + weight (model.normGamma) and its embeddings by
// sqrt(C). Backward in reverse:
// the rotary embedding's transpose, the kv groups summed as heads merge.
import type { LoraLinear, PlanOps, TrainableParameters, tf } from '@lorafleet/core';
import type { ScheduledStepRecipe, StepIo } from '../scheduled-step.js';
import { type LinearSaved, adaptersUnsupported, linear, linearGrad } from '../scheduled-linear.js';
import { headAndLoss } from '../scheduled-head.js';
import type { LlamaModel } from './model.js';
import { inverseFrequencies, rotaryValues } from './rope.js';

type Info = tf.TensorInfo;
type Norm = { y: Info; stats: Info };

/** What the backward pass reads of one layer's forward. */
interface LayerSaved {
  x: Info; // layer input [N, C]
  n1: Norm;
  q: LinearSaved;
  k: LinearSaved;
  v: LinearSaved;
  /** Qwen3's q/k norms over [N*H, D] rows, with their inputs; null elsewhere. */
  qk: { q: Info; k: Info; qn: Norm; kn: Norm } | null;
  attn: ReturnType<PlanOps['attention']>;
  o: LinearSaved;
  mid: Info; // x + attention [N, C]
  n2: Norm;
  gate: LinearSaved;
  up: LinearSaved;
  gateY: Info; // [N, F]
  upY: Info;
  down: LinearSaved;
}

/** The shapes and tables one micro-batch's recording shares. */
interface Shape {
  B: number;
  T: number;
  H: number;
  Hkv: number;
  D: number;
  cos: Info; // [T, D]
  sin: Info;
  eps: number;
}

const view = (t: Info, shape: number[]): Info => ({ ...t, shape });

function layerForward(ops: PlanOps, io: StepIo, m: LlamaModel, i: number, x: Info, s: Shape) {
  const l = m.layers[i]!;
  const { B, T, H, Hkv, D, eps } = s;
  const N = B * T;
  // Dropout seeds as model.ts derives them: (seed * 1009 + layer) * 8 + module (7: the probabilities).
  const seed = (k: number) => (batchSeed: number) => (batchSeed * 1009 + i) * 8 + k;
  const gamma = (w: tf.Variable<tf.Rank.R1>) => m.normGamma(w);
  const n1 = ops.norm(x, gamma(l.inputNorm), null, eps, 'rms');
  const [q, k, v] = [l.qProj, l.kProj, l.vProj].map((p, j) => linear(ops, io, p, n1.y, seed(j)));
  let [qIn, kIn] = [q!.y, k!.y]; // [N, H*D], [N, Hkv*D]
  let qk: LayerSaved['qk'] = null;
  if (l.qNorm && l.kNorm) {
    const qn = ops.norm(view(qIn, [N * H, D]), gamma(l.qNorm), null, eps, 'rms');
    const kn = ops.norm(view(kIn, [N * Hkv, D]), gamma(l.kNorm), null, eps, 'rms');
    qk = { q: qIn, k: kIn, qn, kn };
    [qIn, kIn] = [view(qn.y, [N, H * D]), view(kn.y, [N, Hkv * D])];
  }
  const qh = ops.rope(ops.heads(qIn, B, H, T, D, 0), s.cos, s.sin); // [B*H, T, D]
  const kh = ops.rope(ops.heads(kIn, B, H, T, D, 0, H / Hkv), s.cos, s.sin);
  const vh = ops.heads(v!.y, B, H, T, D, 0, H / Hkv);
  const probsDrop = io.dropoutSite(m.config.attentionDropout, seed(7));
  const attn = ops.attention(qh, kh, vh, 1 / Math.sqrt(D), probsDrop, m.config.slidingWindow ?? 0);
  const o = linear(ops, io, l.oProj, ops.mergeHeads([attn.o], B, H, T), seed(3)); // [N, C]
  const mid = ops.add(x, o.y);
  const n2 = ops.norm(mid, gamma(l.postNorm), null, eps, 'rms');
  const gate = linear(ops, io, l.gateProj, n2.y, seed(4)); // [N, F]
  const up = linear(ops, io, l.upProj, n2.y, seed(5));
  const act = ops.gated(m.config.mlpActivation, gate.y, up.y); // [N, F]
  const down = linear(ops, io, l.downProj, act, seed(6)); // [N, C]
  const saved: LayerSaved = {
    ...{ x, n1, q: q!.saved, k: k!.saved, v: v!.saved, qk, attn, o: o.saved, mid, n2 },
    ...{ gate: gate.saved, up: up.saved, gateY: gate.y, upY: up.y, down: down.saved },
  };
  return { out: ops.add(mid, down.y), saved };
}

/** a + b where either may be absent (a branch nothing below needed). */
function sum(ops: PlanOps, parts: (Info | null)[]): Info | null {
  const present = parts.filter((p): p is Info => p !== null);
  return present.length === 0 ? null : present.reduce((a, b) => ops.add(a, b));
}

/** d(q, k, v projections' outputs) from d(attention output heads), through rope, groups and q/k norms. */
function attentionInputsGrad(
  ops: PlanOps,
  m: LlamaModel,
  i: number,
  sv: LayerSaved,
  dO: Info,
  s: Shape,
) {
  const l = m.layers[i]!;
  const { B, T, H, Hkv, D } = s;
  const N = B * T;
  const { dq, dk, dv } = ops.attentionGrad(sv.attn, dO, 1 / Math.sqrt(D));
  let dQ = ops.mergeHeads([ops.rope(dq, s.cos, s.sin, true)], B, H, T); // [N, H*D]
  let dK = ops.mergeHeads([ops.rope(dk, s.cos, s.sin, true)], B, Hkv, T, H / Hkv); // [N, Hkv*D]
  const dV = ops.mergeHeads([dv], B, Hkv, T, H / Hkv);
  if (sv.qk && l.qNorm && l.kNorm) {
    const { q, k, qn, kn } = sv.qk;
    const grad = (t: Info, n: Norm, w: tf.Variable<tf.Rank.R1>, d: Info, rows: number) =>
      view(ops.normGrad(view(t, [rows, D]), n.stats, m.normGamma(w), view(d, [rows, D]), 'rms'), [
        N,
        (rows / N) * D,
      ]);
    dQ = grad(q, qn, l.qNorm, dQ, N * H);
    dK = grad(k, kn, l.kNorm, dK, N * Hkv);
  }
  return { dQ, dK, dV };
}

/** d(layer input) from d(layer output), or null in the lowest layer that trains. */
function layerBackward(
  ops: PlanOps,
  io: StepIo,
  m: LlamaModel,
  i: number,
  sv: LayerSaved,
  dOut: Info,
  grads: Map<tf.Variable, Info>,
  lowest: boolean,
  s: Shape,
): Info | null {
  const l = m.layers[i]!;
  const trains = (...ls: LoraLinear[]) => !lowest || ls.some((x) => x.activeAdapter !== null);
  const attention = [l.qProj, l.kProj, l.vProj, l.oProj];
  // MLP branch: out = mid + down(act(gate(n2)) * up(n2)), n2 = rmsnorm(mid).
  const dAct = linearGrad(
    ops,
    io,
    l.downProj,
    dOut,
    sv.down,
    grads,
    trains(l.gateProj, l.upProj, ...attention),
  );
  if (!dAct) return null;
  const { dGate, dUp } = ops.gatedGrad(m.config.mlpActivation, sv.gateY, sv.upY, dAct);
  const below = trains(...attention);
  const dN2 = sum(ops, [
    linearGrad(ops, io, l.gateProj, dGate, sv.gate, grads, below),
    linearGrad(ops, io, l.upProj, dUp, sv.up, grads, below),
  ]);
  if (!dN2) return null;
  const dMid = ops.add(
    dOut,
    ops.normGrad(sv.mid, sv.n2.stats, m.normGamma(l.postNorm), dN2, 'rms'),
  );
  // Attention branch: mid = x + o(merge(attention(rope(q), rope(k), v))).
  const dMerged = linearGrad(
    ops,
    io,
    l.oProj,
    dMid,
    sv.o,
    grads,
    trains(l.qProj, l.kProj, l.vProj),
  );
  if (!dMerged) return null;
  const dO = ops.heads(dMerged, s.B, s.H, s.T, s.D, 0); // [B*H, T, D]
  const { dQ, dK, dV } = attentionInputsGrad(ops, m, i, sv, dO, s);
  const dN1 = sum(ops, [
    linearGrad(ops, io, l.qProj, dQ, sv.q, grads, !lowest),
    linearGrad(ops, io, l.kProj, dK, sv.k, grads, !lowest),
    linearGrad(ops, io, l.vProj, dV, sv.v, grads, !lowest),
  ]);
  if (!dN1) return null;
  return ops.add(dMid, ops.normGrad(sv.x, sv.n1.stats, m.normGamma(l.inputNorm), dN1, 'rms'));
}

/** The recipe for one Llama-family model. */
export function llamaScheduledStep(m: LlamaModel): ScheduledStepRecipe {
  return {
    unsupported: (params) => llamaUnsupported(m, params),
    record(ops, io) {
      const c = m.config;
      const positions = Int32Array.from({ length: io.seq }, (_, t) => t);
      const tables = rotaryValues(inverseFrequencies(c), positions);
      const s: Shape = {
        ...{ B: io.batch, T: io.seq, H: c.numHeads, Hkv: c.numKvHeads, D: c.headDim },
        cos: ops.rec.constant(tables.cos, [io.seq, c.headDim]),
        sin: ops.rec.constant(tables.sin, [io.seq, c.headDim]),
        eps: c.rmsNormEps,
      };
      const grads = new Map<tf.Variable, Info>();
      let x = ops.embed(io.ids, m.embed, null, io.seq, c.embedScale); // [N, C]
      const saved: LayerSaved[] = [];
      for (let i = 0; i < m.layers.length; i++) {
        const layer = layerForward(ops, io, m, i, x, s);
        saved.push(layer.saved);
        x = layer.out;
      }
      const final = ops.norm(x, m.normGamma(m.norm), null, s.eps, 'rms');
      const head = m.lmHead ?? m.embed; // [V, C]
      const { loss, dy: dFinal } = headAndLoss(ops, io, final.y, head);
      if (!dFinal) return { loss, grads };
      let dx: Info | null = ops.normGrad(x, final.stats, m.normGamma(m.norm), dFinal, 'rms');
      // Backward stops at the lowest layer with an adapter: the embedding is frozen.
      const lowest = m.layers.findIndex((l) =>
        [l.qProj, l.kProj, l.vProj, l.oProj, l.gateProj, l.upProj, l.downProj].some(
          (p) => p.activeAdapter !== null,
        ),
      );
      for (let i = m.layers.length - 1; lowest >= 0 && i >= lowest && dx !== null; i--) {
        dx = layerBackward(ops, io, m, i, saved[i]!, dx, grads, i === lowest, s);
      }
      return { loss, grads };
    },
  };
}

/** Why the scheduled step cannot train `m` with `params` (null: it can). */
function llamaUnsupported(m: LlamaModel, params: TrainableParameters | null): string | null {
  const c = m.config;
  if (c.modelType === 'gemma3_text')
    return "Gemma 3's norms after attention and MLP, per-layer windows and local rotary base are not recorded yet";
  if (c.numHeads % c.numKvHeads !== 0)
    return `${c.numHeads} attention heads do not divide into ${c.numKvHeads} key/value heads`;
  return adaptersUnsupported(m.linears(), m.embeddings(), params);
}
