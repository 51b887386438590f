// GPT-2's hand-scheduled LoRA step (scheduled-step.ts): the forward and
// backward of model.ts written as explicit kernels, for what the LoRA step
// trains (the adapters of the linear layers; everything else frozen), with
// the tape's dropout masks (seeds.ts): embeddings, attention probabilities,
// residual branches and LoRA. Reads top to bottom as the model: embeddings,
// blocks, ln_f, tied head and loss, then the blocks backward. Each block
// keeps for backward its input, the norms' outputs and statistics, the LoRA
// intermediates, attention's q, k, v, o and log-sum-exp, and the MLP's
// pre- and post-activation; the plan's allocator frees the rest.
import type { LoraLinear, PlanDropout, PlanOps, TrainableParameters, tf } from '@lorafleet/core';
import type { ScheduledStepRecipe, StepIo } from '../scheduled-step.js';
import { type LinearSaved, adaptersUnsupported, linear, linearGrad } from '../scheduled-linear.js';
import { headAndLoss } from '../scheduled-head.js';
import { packedDropoutReason } from '../scheduled-step.js';
import type { Gpt2Model } from './model.js';
import { type Gpt2BlockSeeds, gpt2Seeds } from './seeds.js';

type Info = tf.TensorInfo;

interface BlockSaved {
  x: Info; // block input [N, C]
  ln1: { y: Info; stats: Info };
  qkv: LinearSaved;
  attn: ReturnType<PlanOps['attention']>;
  proj: LinearSaved; // input: heads merged [N, C]
  mid: Info; // x + attention [N, C]
  ln2: { y: Info; stats: Info };
  fc: LinearSaved;
  pre: Info; // c_fc output [N, 4C]
  mlp: LinearSaved; // input: gelu_new(pre) [N, 4C]
  /** The residual branches' dropout masks (resid_pdrop). */
  attnResid: PlanDropout | null;
  mlpResid: PlanDropout | null;
}

/** x, or x times the mask of `drop` (none: x). */
const dropped = (ops: PlanOps, x: Info, drop: PlanDropout | null) =>
  drop ? ops.dropout(x, drop) : x;

function blockForward(
  ops: PlanOps,
  io: StepIo,
  m: Gpt2Model,
  i: number,
  x: Info,
): { out: Info; saved: BlockSaved } {
  const b = m.blocks[i]!;
  const c = m.config;
  const { nHead: H, nEmbd: C, layerNormEpsilon: eps } = c;
  const [B, T, D] = [io.batch, io.seq, C / H];
  // Every mask's seed as the tape derives it from the micro-batch's seed s (seeds.ts).
  const at = (site: (b: Gpt2BlockSeeds) => number | null) => (s: number) =>
    site(gpt2Seeds(c, s, true).blocks[i]!)!;
  const lora = (k: number) => at((s) => (k < 2 ? s.attn : s.mlp) * 4 + k);
  const ln1 = ops.norm(x, b.ln1.gamma, b.ln1.beta, eps, 'layer');
  const qkv = linear(ops, io, b.cAttn, ln1.y, lora(0)); // [N, 3C]
  const [q, k, v] = [0, 1, 2].map((part) => ops.heads(qkv.y, B, H, T, D, part * H * D)); // [B*H, T, D]
  const probs = io.dropoutSite(
    c.attnPdrop,
    at((s) => s.probs),
  );
  const spans = io.documents?.spans ?? null; // packed documents attend within each
  const attn = ops.attention(q!, k!, v!, 1 / Math.sqrt(D), { drop: probs, spans });
  const attnResid = io.dropoutSite(
    c.residPdrop,
    at((s) => s.attnResid),
  );
  // The residual add folded into c_proj's dispatch where no dropout comes between.
  const merged = ops.mergeHeads([attn.o], B, H, T);
  const proj = linear(ops, io, b.attnProj, merged, lora(1), attnResid ? null : x); // [N, C]
  const mid = attnResid ? ops.add(x, ops.dropout(proj.y, attnResid)) : proj.y; // [N, C]
  const ln2 = ops.norm(mid, b.ln2.gamma, b.ln2.beta, eps, 'layer');
  const fc = linear(ops, io, b.cFc, ln2.y, lora(2)); // [N, 4C]
  const mlpResid = io.dropoutSite(
    c.residPdrop,
    at((s) => s.mlpResid),
  );
  const act = ops.geluNew(fc.y); // [N, 4C]
  const mlp = linear(ops, io, b.mlpProj, act, lora(3), mlpResid ? null : mid); // [N, C]
  const out = mlpResid ? ops.add(mid, ops.dropout(mlp.y, mlpResid)) : mlp.y;
  return {
    out,
    saved: {
      x,
      ln1,
      qkv: qkv.saved,
      attn,
      proj: proj.saved,
      mid,
      ln2,
      fc: fc.saved,
      pre: fc.y,
      mlp: mlp.saved,
      attnResid,
      mlpResid,
    },
  };
}

/**
 * d(block input) from d(block output); the block's adapter gradients into
 * `grads`. In the lowest block that trains (`lowest`), nothing below needs
 * d(block input): it stops at the adapters' gradients and returns null.
 */
function blockBackward(
  ops: PlanOps,
  io: StepIo,
  m: Gpt2Model,
  i: number,
  s: BlockSaved,
  dOut: Info,
  grads: Map<tf.Variable, Info>,
  lowest: boolean,
): Info | null {
  const b = m.blocks[i]!;
  const { nHead: H, nEmbd: C } = m.config;
  const [B, T, D] = [io.batch, io.seq, C / H];
  // What still needs a gradient below each point (in the lowest block, only adapters do).
  const trains = (...ls: LoraLinear[]) => !lowest || ls.some((l) => l.activeAdapter !== null);
  // MLP branch: out = mid + c_proj(gelu(c_fc(ln2(mid)))).
  const dMlp = dropped(ops, dOut, s.mlpResid); // [N, C]
  const dAct = linearGrad(
    ops,
    io,
    b.mlpProj,
    dMlp,
    s.mlp,
    grads,
    trains(b.cFc, b.attnProj, b.cAttn),
  );
  if (!dAct) return null; // [N, 4C]
  const dPre = ops.geluNewGrad(s.pre, dAct);
  const dLn2 = linearGrad(ops, io, b.cFc, dPre, s.fc, grads, trains(b.attnProj, b.cAttn));
  if (!dLn2) return null; // [N, C]
  const dMid = ops.normGrad(s.mid, s.ln2.stats, b.ln2.gamma, dLn2, 'layer', dOut); // + dOut
  // Attention branch: mid = x + c_proj(merge(attention(split(c_attn(ln1(x)))))).
  const dProj = dropped(ops, dMid, s.attnResid); // [N, C]
  const dMerged = linearGrad(ops, io, b.attnProj, dProj, s.proj, grads, trains(b.cAttn));
  if (!dMerged) return null; // [N, C]
  const dO = ops.heads(dMerged, B, H, T, D, 0); // [B*H, T, D]
  const { dq, dk, dv } = ops.attentionGrad(s.attn, dO, 1 / Math.sqrt(D));
  const dQkv = ops.mergeHeads([dq, dk, dv], B, H, T); // [N, 3C]
  const dLn1 = linearGrad(ops, io, b.cAttn, dQkv, s.qkv, grads, !lowest);
  if (!dLn1) return null; // [N, C]
  return ops.normGrad(s.x, s.ln1.stats, b.ln1.gamma, dLn1, 'layer', dMid); // + dMid
}

/** The blocks backward from d(last block output), down to the lowest block with an adapter. */
function blocksBackward(
  ops: PlanOps,
  io: StepIo,
  m: Gpt2Model,
  saved: BlockSaved[],
  dLast: Info,
  grads: Map<tf.Variable, Info>,
): void {
  // Nothing below the lowest adapter needs a gradient: the embeddings are frozen.
  const lowest = m.blocks.findIndex((b) =>
    [b.cAttn, b.attnProj, b.cFc, b.mlpProj].some((l) => l.activeAdapter !== null),
  );
  let dx: Info | null = dLast;
  for (let i = m.blocks.length - 1; lowest >= 0 && i >= lowest && dx !== null; i--) {
    dx = blockBackward(ops, io, m, i, saved[i]!, dx, grads, i === lowest);
  }
}

/** The recipe for one GPT-2 model. */
export function gpt2ScheduledStep(m: Gpt2Model): ScheduledStepRecipe {
  return {
    unsupported: (params, packed) => gpt2Unsupported(m, params, packed),
    record(ops, io) {
      const eps = m.config.layerNormEpsilon;
      const grads = new Map<tf.Variable, Info>();
      const embd = io.dropoutSite(m.config.embdPdrop, (s) => gpt2Seeds(m.config, s, true).embd!);
      let x = dropped(
        ops,
        ops.embed(io.ids, m.wte, m.wpe, io.seq, {
          positions: io.documents?.positions ?? null,
          noise: io.neftune,
        }),
        embd,
      ); // [N, C]
      const saved: BlockSaved[] = [];
      for (let i = 0; i < m.blocks.length; i++) {
        const block = blockForward(ops, io, m, i, x);
        saved.push(block.saved);
        x = block.out;
      }
      const lnF = ops.norm(x, m.lnF.gamma, m.lnF.beta, eps, 'layer');
      const { loss, dy: dLnF } = headAndLoss(ops, io, lnF.y, m.wte); // the head tied to wte
      if (!dLnF) return { loss, grads };
      const dx = ops.normGrad(x, lnF.stats, m.lnF.gamma, dLnF, 'layer');
      blocksBackward(ops, io, m, saved, dx, grads);
      return { loss, grads };
    },
  };
}

/** Why the scheduled step cannot train `m` with `params` (null: it can), on packed documents where `packed`. */
function gpt2Unsupported(
  m: Gpt2Model,
  params: TrainableParameters | null,
  packed: boolean,
): string | null {
  if (packed && params !== null && m.config.attnPdrop > 0) return packedDropoutReason('attn_pdrop');
  return adaptersUnsupported(m.linears(), m.embeddings(), params);
}
