// The Llama family's hand-scheduled LoRA step (scheduled-step.ts; Llama,
// Mistral, Qwen2, Qwen3, Gemma, Gemma 2, Gemma 3, Granite, SmolLM3, Phi-3, OLMo 2, GLM):
// model.ts's forward and backward as explicit kernels, for the linear layers' adapters, with LoRA and attention dropout
// (the tape's masks), Mistral's sliding window and packed documents (their
// positions rotate, their spans bound attention). Per layer:
// RMSNorm, q/k/v projections (Qwen3's per-head q/k RMSNorm), heads split
// with grouped-query keys and values repeated in the split, rotary
// embedding, fused causal attention, heads merge, o_proj, residual; RMSNorm,
// gate/up projections, SwiGLU (Gemma: GeGLU), down_proj, residual. Gemma's
// norms multiply by 1 + weight (model.normGamma) and its embeddings by
// sqrt(C); Gemma 3 norms the attention and MLP outputs too (branchOut),
// scales scores by query_pre_attn_scalar, and its sliding layers have their
// own window and rotation (Gemma 2 alike, with one rotation, and soft-caps
// its scores in the attention kernels and its logits in the head); Granite
// scales its embeddings, scores, branch outputs and logits; SmolLM3's NoPE
// layers skip the rotation; Phi-3's fused qkv_proj is split into heads
// straight from its columns and its gate_up_proj into gate and up, and its
// partial rotation leaves a head's last dims alone. Backward in reverse:
// the rotary embedding's transpose, the kv groups summed as heads merge.
import type { LoraLinear, PlanOps, TrainableParameters, tf } from '@lorafleet/core';
import { type ScheduledStepRecipe, type StepIo, packedDropoutReason } from '../scheduled-step.js';
import { type LinearSaved, adaptersUnsupported, linear, linearGrad } from '../scheduled-linear.js';
import { headAndLoss } from '../scheduled-head.js';
import { attentionScale, layerRotates, layerWindow, rotaryDim } from './config.js';
import type { LlamaModel } from './model.js';
import { layerLinearLayers } from './weights.js';
import { inverseFrequencies, rotaryScale, rotaryValues } from './rope.js';

type Info = tf.TensorInfo;
type Norm = { y: Info; stats: Info };

/** What the backward pass reads of one layer's forward. */
interface LayerSaved {
  x: Info; // layer input [N, C]
  /** input_layernorm; null: OLMo 2 (none). */
  n1: Norm | null;
  /** q, k, v projections, or Phi-3's one qkv_proj. */
  qkv: LinearSaved[];
  /** The q/k norms (Qwen3's over [N*H, D] rows, OLMo 2's over [N, H*D]), with their inputs; null elsewhere. */
  qk: { q: Info; k: Info; qn: Norm; kn: Norm } | null;
  attn: ReturnType<PlanOps['attention']>;
  o: LinearSaved;
  mid: Info; // x + attention [N, C]
  /** The norm before the MLP; null: OLMo 2 (none). */
  n2: Norm | null;
  /** gate and up projections, or Phi-3's one gate_up_proj. */
  gateUp: LinearSaved[];
  gateY: Info; // [N, F]
  upY: Info;
  down: LinearSaved;
  /** Gemma 3: the norms of the attention and MLP outputs; null elsewhere. */
  oNorm: BranchNorm | null;
  downNorm: BranchNorm | null;
}

/** A branch output's norm before its residual add (Gemma 3), with what its backward reads. */
interface BranchNorm {
  x: Info;
  n: Norm;
  w: tf.Variable<tf.Rank.R1>;
}

/** The rotary tables [T, D]. */
interface Rotation {
  cos: Info;
  sin: Info;
}

/** The shapes and tables one micro-batch's recording shares. */
interface Shape extends Rotation {
  B: number;
  T: number;
  H: number;
  Hkv: number;
  D: number;
  eps: number;
  /** The attention scores' scale (config.ts's attentionScale). */
  scale: number;
  /** Gemma 3's sliding layers' rotation (rope_local_base_freq); null: as every layer. */
  local: Rotation | null;
}

/** Layer i's rotation: Gemma 3's sliding layers have their own. */
const rotation = (m: LlamaModel, i: number, s: Shape): Rotation =>
  m.config.slidingLayers?.[i] === true && s.local ? s.local : s;

/**
 * What a branch's residual add receives: Gemma 2 and 3 norm the branch's
 * output first, Granite multiplies it by residual_multiplier; elsewhere the
 * output itself.
 */
function branchOut(
  ops: PlanOps,
  m: LlamaModel,
  y: Info,
  w: tf.Variable<tf.Rank.R1> | null,
  eps: number,
): { y: Info; norm: BranchNorm | null } {
  const r = m.config.residualMultiplier;
  const scaled = (t: Info) => (r === 1 ? t : ops.scale(t, r));
  if (!w) return { y: scaled(y), norm: null };
  const n = ops.norm(y, m.normGamma(w), null, eps, 'rms');
  return { y: scaled(n.y), norm: { x: y, n, w } };
}

/**
 * x + branchOut(the branch's last product): folded into that product's
 * dispatch where nothing comes between (no output norm, no multiplier).
 */
function addBranch(
  ops: PlanOps,
  m: LlamaModel,
  x: Info,
  w: tf.Variable<tf.Rank.R1> | null,
  eps: number,
  product: (residual: Info | null) => ReturnType<typeof linear>,
): { sum: Info; saved: LinearSaved; norm: BranchNorm | null } {
  if (w === null && m.config.residualMultiplier === 1) {
    const folded = product(x);
    return { sum: folded.y, saved: folded.saved, norm: null };
  }
  const p = product(null);
  const out = branchOut(ops, m, p.y, w, eps);
  return { sum: ops.add(x, out.y), saved: p.saved, norm: out.norm };
}

/** d(branch output) from d(what its residual add received). */
function branchGrad(ops: PlanOps, m: LlamaModel, norm: BranchNorm | null, dy: Info): Info {
  const r = m.config.residualMultiplier;
  const d = r === 1 ? dy : ops.scale(dy, r);
  return norm ? ops.normGrad(norm.x, norm.n.stats, m.normGamma(norm.w), d, 'rms') : d;
}

/** x through a branch's input norm `w`, or x itself where there is none (OLMo 2). */
function normIn(
  ops: PlanOps,
  m: LlamaModel,
  x: Info,
  w: tf.Variable<tf.Rank.R1> | null,
  eps: number,
) {
  const n = w === null ? null : ops.norm(x, m.normGamma(w), null, eps, 'rms');
  return { y: n === null ? x : n.y, n };
}

/** d(x) from d(normIn's output), plus the residual stream's `dRes` (in the norm's pass where there is one). */
function normInGrad(
  ops: PlanOps,
  m: LlamaModel,
  x: Info,
  n: Norm | null,
  w: tf.Variable<tf.Rank.R1> | null,
  dy: Info,
  dRes: Info,
) {
  if (n === null || w === null) return ops.add(dRes, dy); // OLMo 2: no norm
  return ops.normGrad(x, n.stats, m.normGamma(w), dy, 'rms', dRes);
}

const view = (t: Info, shape: number[]): Info => ({ ...t, shape });

/** The rows the q and k norms run over: one per head (N*H, N*Hkv), or OLMo 2's one per token (N). */
const qkRows = (m: LlamaModel, N: number, H: number, Hkv: number): [number, number] =>
  m.config.qkNorm === 'all' ? [N, N] : [N * H, N * Hkv];

function layerForward(ops: PlanOps, io: StepIo, m: LlamaModel, i: number, x: Info, s: Shape) {
  const l = m.layers[i]!;
  const { B, T, H, Hkv, D, eps } = s;
  const N = B * T;
  // Dropout seeds as model.ts derives them: (seed * 1009 + layer) * 8 + module (7: the probabilities).
  const seed = (k: number) => (batchSeed: number) => (batchSeed * 1009 + i) * 8 + k;
  const gamma = (w: tf.Variable<tf.Rank.R1>) => m.normGamma(w);
  const n1 = normIn(ops, m, x, l.inputNorm, eps);
  const qkv = l.qkvProj.map((p, j) => linear(ops, io, p, n1.y, seed(j)));
  // [N, H*D], [N, Hkv*D] twice, and where each starts; Phi-3: column blocks of one [N, (H+2Hkv)*D].
  const fused = qkv.length === 1;
  const sources = fused ? [qkv[0]!.y, qkv[0]!.y, qkv[0]!.y] : qkv.map((p) => p.y);
  let [qIn, kIn] = [sources[0]!, sources[1]!];
  const vIn = sources[2]!;
  const first = fused ? [0, H * D, (H + Hkv) * D] : [0, 0, 0];
  let qk: LayerSaved['qk'] = null;
  if (l.qNorm && l.kNorm) {
    const [qRows, kRows] = qkRows(m, N, H, Hkv); // rows of width D, or OLMo 2's of H*D
    const qn = ops.norm(view(qIn, [qRows, (N * H * D) / qRows]), gamma(l.qNorm), null, eps, 'rms');
    const kn = ops.norm(
      view(kIn, [kRows, (N * Hkv * D) / kRows]),
      gamma(l.kNorm),
      null,
      eps,
      'rms',
    );
    qk = { q: qIn, k: kIn, qn, kn };
    [qIn, kIn] = [view(qn.y, [N, H * D]), view(kn.y, [N, Hkv * D])];
  }
  const { cos, sin } = rotation(m, i, s);
  const pairs = m.config.rotaryInterleaved; // GLM
  const positions = io.documents?.positions ?? null; // packed documents' own
  const rotate = (t: Info) =>
    layerRotates(m.config, i) ? ops.rope(t, cos, sin, false, pairs, positions) : t; // SmolLM3's NoPE
  const qh = rotate(ops.heads(qIn, B, H, T, D, first[0]!)); // [B*H, T, D]
  const kh = rotate(ops.heads(kIn, B, H, T, D, first[1]!, H / Hkv));
  const vh = ops.heads(vIn, B, H, T, D, first[2]!, H / Hkv);
  const probsDrop = io.dropoutSite(m.config.attentionDropout, seed(7));
  const window = layerWindow(m.config, i) ?? 0;
  const attn = ops.attention(qh, kh, vh, s.scale, {
    ...{ drop: probsDrop, window, softcap: m.config.attnSoftcap ?? 0 },
    spans: io.documents?.spans ?? null, // packed documents attend within each
  });
  const merged = ops.mergeHeads([attn.o], B, H, T); // [N, C]
  const o = addBranch(ops, m, x, l.attnOutNorm, eps, (r) =>
    linear(ops, io, l.oProj, merged, seed(3), r),
  );
  const mid = o.sum; // x + o_proj(attention) [N, C]
  const n2 = normIn(ops, m, mid, l.preMlpNorm, eps);
  const gateUp = l.gateUpProj.map((p, j) => linear(ops, io, p, n2.y, seed(4 + j)));
  const F = m.config.intermediateSize;
  // [N, F] each; Phi-3: the halves of one [N, 2F].
  const [gateY, upY] =
    gateUp.length === 2
      ? gateUp.map((p) => p.y)
      : [ops.columns(gateUp[0]!.y, 0, F), ops.columns(gateUp[0]!.y, F, F)];
  const act = ops.gated(m.config.mlpActivation, gateY!, upY!); // [N, F]
  const down = addBranch(ops, m, mid, l.mlpOutNorm, eps, (r) =>
    linear(ops, io, l.downProj, act, seed(6), r),
  ); // mid + down_proj(act) [N, C]
  const saved: LayerSaved = {
    ...{ x, n1: n1.n, qkv: qkv.map((p) => p.saved), qk, attn, o: o.saved, mid, n2: n2.n },
    ...{ gateUp: gateUp.map((p) => p.saved), gateY: gateY!, upY: upY!, down: down.saved },
    ...{ oNorm: o.norm, downNorm: down.norm },
  };
  return { out: down.sum, saved };
}

/** a + b where either may be absent (a branch nothing below needed). */
function sum(ops: PlanOps, parts: (Info | null)[]): Info | null {
  const present = parts.filter((p): p is Info => p !== null);
  return present.length === 0 ? null : present.reduce((a, b) => ops.add(a, b));
}

/** d(q, k, v projections' outputs) from d(attention output heads), through rope, groups and q/k norms. */
function attentionInputsGrad(
  ops: PlanOps,
  io: StepIo,
  m: LlamaModel,
  i: number,
  sv: LayerSaved,
  dO: Info,
  s: Shape,
) {
  const l = m.layers[i]!;
  const { B, T, H, Hkv } = s;
  const N = B * T;
  const { dq, dk, dv } = ops.attentionGrad(sv.attn, dO, s.scale);
  const { cos, sin } = rotation(m, i, s);
  const pairs = m.config.rotaryInterleaved;
  const positions = io.documents?.positions ?? null;
  const unrotate = (t: Info) =>
    layerRotates(m.config, i) ? ops.rope(t, cos, sin, true, pairs, positions) : t;
  let dQ = ops.mergeHeads([unrotate(dq)], B, H, T); // [N, H*D]
  let dK = ops.mergeHeads([unrotate(dk)], B, Hkv, T, H / Hkv); // [N, Hkv*D]
  const dV = ops.mergeHeads([dv], B, Hkv, T, H / Hkv);
  if (sv.qk && l.qNorm && l.kNorm) {
    const { q, k, qn, kn } = sv.qk;
    const grad = (t: Info, n: Norm, w: tf.Variable<tf.Rank.R1>, d: Info, rows: number) => {
      const width = t.shape[1]! * (N / rows); // D, or OLMo 2's H*D
      const g = ops.normGrad(
        view(t, [rows, width]),
        n.stats,
        m.normGamma(w),
        view(d, [rows, width]),
        'rms',
      );
      return view(g, t.shape);
    };
    const [qRows, kRows] = qkRows(m, N, H, Hkv);
    dQ = grad(q, qn, l.qNorm, dQ, qRows);
    dK = grad(k, kn, l.kNorm, dK, kRows);
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
  const attention = [...l.qkvProj, l.oProj];
  // MLP branch: out = mid + down(act(gate(n2)) * up(n2)), n2 = rmsnorm(mid).
  const dAct = linearGrad(
    ops,
    io,
    l.downProj,
    branchGrad(ops, m, sv.downNorm, dOut),
    sv.down,
    grads,
    trains(...l.gateUpProj, ...attention),
  );
  if (!dAct) return null;
  const { dGate, dUp } = ops.gatedGrad(m.config.mlpActivation, sv.gateY, sv.upY, dAct);
  const below = trains(...attention);
  // Phi-3's gate_up_proj: one gradient [N, 2F] of both halves.
  const dGateUp = l.gateUpProj.length === 2 ? [dGate, dUp] : [ops.joinColumns([dGate, dUp])];
  const dN2 = sum(
    ops,
    l.gateUpProj.map((p, j) => linearGrad(ops, io, p, dGateUp[j]!, sv.gateUp[j]!, grads, below)),
  );
  if (!dN2) return null;
  const dMid = normInGrad(ops, m, sv.mid, sv.n2, l.preMlpNorm, dN2, dOut);
  // Attention branch: mid = x + o(merge(attention(rope(q), rope(k), v))).
  const dMerged = linearGrad(
    ops,
    io,
    l.oProj,
    branchGrad(ops, m, sv.oNorm, dMid),
    sv.o,
    grads,
    trains(...l.qkvProj),
  );
  if (!dMerged) return null;
  const dO = ops.heads(dMerged, s.B, s.H, s.T, s.D, 0); // [B*H, T, D]
  const { dQ, dK, dV } = attentionInputsGrad(ops, io, m, i, sv, dO, s);
  // Phi-3's qkv_proj: one gradient [N, (H+2Hkv)*D] of its three blocks.
  const dQkv = l.qkvProj.length === 3 ? [dQ, dK, dV] : [ops.joinColumns([dQ, dK, dV])];
  const dN1 = sum(
    ops,
    l.qkvProj.map((p, j) => linearGrad(ops, io, p, dQkv[j]!, sv.qkv[j]!, grads, !lowest)),
  );
  if (!dN1) return null;
  return normInGrad(ops, m, sv.x, sv.n1, l.inputNorm, dN1, dMid);
}

/** The recipe for one Llama-family model. */
export function llamaScheduledStep(m: LlamaModel): ScheduledStepRecipe {
  return {
    unsupported: (params, packed) => llamaUnsupported(m, params, packed),
    record(ops, io) {
      const c = m.config;
      const positions = Int32Array.from({ length: io.seq }, (_, t) => t);
      const rotary = (theta: number, scaled: boolean): Rotation => {
        const cfg = { ...c, ropeTheta: theta, ropeScaling: scaled ? c.ropeScaling : null };
        const tables = rotaryValues(
          inverseFrequencies(cfg, io.seq), // positions 0 .. T - 1
          positions,
          rotaryScale(cfg),
          c.rotaryInterleaved,
        );
        const [cos, sin] = [tables.cos, tables.sin].map((t) =>
          ops.rec.constant(t, [io.seq, rotaryDim(c)]),
        );
        return { cos: cos!, sin: sin! };
      };
      const s: Shape = {
        ...{ B: io.batch, T: io.seq, H: c.numHeads, Hkv: c.numKvHeads, D: c.headDim },
        ...rotary(c.ropeTheta, true),
        eps: c.rmsNormEps,
        scale: attentionScale(c),
        local: c.localRopeTheta === null ? null : rotary(c.localRopeTheta, false),
      };
      const grads = new Map<tf.Variable, Info>();
      let x = ops.embed(io.ids, m.embed, null, io.seq, {
        scale: c.embedScale,
        noise: io.neftune,
      }); // [N, C]
      const saved: LayerSaved[] = [];
      for (let i = 0; i < m.layers.length; i++) {
        const layer = layerForward(ops, io, m, i, x, s);
        saved.push(layer.saved);
        x = layer.out;
      }
      const final = ops.norm(x, m.normGamma(m.norm), null, s.eps, 'rms');
      const head = m.lmHead ?? m.embed; // [V, C]
      const shaping = { scaling: c.logitsScaling, softcap: c.finalSoftcap ?? 0 };
      const { loss, dy: dFinal } = headAndLoss(ops, io, final.y, head, shaping);
      if (!dFinal) return { loss, grads };
      let dx: Info | null = ops.normGrad(x, final.stats, m.normGamma(m.norm), dFinal, 'rms');
      // Backward stops at the lowest layer with an adapter: the embedding is frozen.
      const lowest = m.layers.findIndex((l) =>
        layerLinearLayers(l).some((p) => p.activeAdapter !== null),
      );
      for (let i = m.layers.length - 1; lowest >= 0 && i >= lowest && dx !== null; i--) {
        dx = layerBackward(ops, io, m, i, saved[i]!, dx, grads, i === lowest, s);
      }
      return { loss, grads };
    },
  };
}

/** Why the scheduled step cannot train `m` with `params` (null: it can), on packed documents where `packed`. */
function llamaUnsupported(
  m: LlamaModel,
  params: TrainableParameters | null,
  packed: boolean,
): string | null {
  const c = m.config;
  if (packed && params !== null && c.attentionDropout > 0)
    return packedDropoutReason('attention_dropout');
  if (packed && c.ropeScaling?.type === 'longrope')
    return "LongRoPE picks each row's factors by its longest packed document; the plan's rotation is fixed per shape";
  if (c.numHeads % c.numKvHeads !== 0)
    return `${c.numHeads} attention heads do not divide into ${c.numKvHeads} key/value heads`;
  if (c.fusedQkv && c.qkNorm) return 'q/k norms on a fused qkv_proj are not scheduled';
  return adaptersUnsupported(m.linears(), m.embeddings(), params);
}
