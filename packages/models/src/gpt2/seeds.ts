// The dropout seeds of one GPT-2 pass, derived from the micro-batch's seed
// s: one function, so that the tape (model.ts) and the hand-scheduled step
// (scheduled.ts) draw the same masks. Model dropout sites are numbered in
// the order the forward meets them (embeddings; per block: attention
// probabilities, attention residual, MLP residual) and seeded s * 1009 +
// site; a block's LoRA modules are seeded (s + site) * 4 + k (k: c_attn 0,
// c_proj 1, c_fc 2, mlp c_proj 3), `site` counting the sites met before plus
// one per branch. A site at rate 0 (or outside training) takes no number.
import type { Gpt2Config } from './config.js';

/** One block's seeds; null: that site draws no mask. */
export interface Gpt2BlockSeeds {
  /** The attention branch's LoRA base: c_attn seeds attn * 4, its c_proj attn * 4 + 1. */
  attn: number;
  /** Dropout on the attention probabilities (attn_pdrop). */
  probs: number | null;
  /** Dropout on the attention branch's output (resid_pdrop). */
  attnResid: number | null;
  /** The MLP branch's LoRA base: c_fc seeds mlp * 4 + 2, its c_proj mlp * 4 + 3. */
  mlp: number;
  /** Dropout on the MLP branch's output (resid_pdrop). */
  mlpResid: number | null;
}

export interface Gpt2Seeds {
  /** Dropout on the embeddings (embd_pdrop). */
  embd: number | null;
  blocks: Gpt2BlockSeeds[];
}

/** The seeds of a pass with micro-batch seed `seed`. */
export function gpt2Seeds(c: Gpt2Config, seed: number, training: boolean): Gpt2Seeds {
  let site = 0;
  const next = (p: number) => (training && p > 0 ? seed * 1009 + site++ : null);
  const embd = next(c.embdPdrop);
  const blocks: Gpt2BlockSeeds[] = [];
  for (let i = 0; i < c.nLayer; i++) {
    const attn = seed + site;
    const probs = next(c.attnPdrop);
    site += 1;
    const attnResid = next(c.residPdrop);
    const mlp = seed + site;
    site += 1;
    blocks.push({ attn, probs, attnResid, mlp, mlpResid: next(c.residPdrop) });
  }
  return { embd, blocks };
}
