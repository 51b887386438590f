// How much memory one training micro-batch takes, so a run can pick a
// micro-batch that fits (or refuse one that does not) before it starts,
// instead of aborting inside wasm ("Aborted(), build with -sASSERTIONS") when
// the heap passes wasm32's 4 GiB.
//
// The coefficients are measured, not derived: tfjs's tape keeps the
// intermediates its gradients read (the matmuls' and fused ops' inputs, the
// attention's probabilities) until the backward pass; the adds, scales and
// reshapes keep nothing (core's shape-only ops). Peak RSS of one
// `train --steps 1` on the default model (C 256, 4 layers, 8 heads, vocab
// 257; 2026-12-06) at eight B x T from 50x16 to 8x256 fits, beside ~200 MB
// of process and model, 51 floats of width C and ~5 copies of the H x T
// attention scores per token and layer (+/- 9%; 74 and 7 before the
// shape-only ops). With --gradient-checkpointing, seven B x T fit 3
// floats of width C per token and layer plus one layer's intermediates. A
// one-layer GPT-2 of vocabulary 32768 (C 64) keeps ~2 floats of width V per
// token (the logits and their gradient); 2.5 are counted.
import type { BaseDtype } from '@lorafleet/core';
import type { ModelConfig } from './causal-lm.js';
import { lossChunkRows } from './loss.js';

/** What the estimate reads of a model: any family's config. */
export type EstimateConfig = Pick<
  ModelConfig,
  'numLayers' | 'hiddenSize' | 'numHeads' | 'vocabSize'
>;

/** wasm32 addresses 4 GiB. */
export const WASM_HEAP_BYTES = 4 * 1024 ** 3;
/** Share of the heap a micro-batch's activations may take: the rest is weights, optimizer, slack. */
export const ACTIVATION_SHARE = 0.75;

const FLOATS_PER_TOKEN_LAYER_C = 51;
/**
 * Rows packing documents apart (packed-documents.ts) keep their split,
 * padded and joined copies of q, k, v and the output too: peak RSS of
 * 25 x 256 with documents of 32, 64 and 128 tokens fits ~21 more floats of
 * width C per token and layer, with the attention's span the document rows'.
 */
const PACKED_FLOATS_PER_TOKEN_LAYER_C = 21;
const ATTENTION_COPIES = 5;
const FLOATS_PER_TOKEN_V = 2.5;
/** Gradient checkpointing keeps each layer's input (and gradients passing through, in backward). */
const CHECKPOINT_FLOATS_PER_TOKEN_LAYER_C = 3;

/**
 * Bytes the activations of one micro-batch of `rows` x `seqLen` tokens take
 * during a step; `checkpointed` (--gradient-checkpointing): every layer's
 * input and one layer's intermediates, recomputed in backward, and the
 * logits of one chunk of the loss (loss.ts chunkedNllSum); `documentSpan`:
 * rows pack documents apart, the longest (rounded up to 8) this long.
 */
export function activationBytes(
  config: EstimateConfig,
  rows: number,
  seqLen: number,
  checkpointed = false,
  documentSpan?: number,
): number {
  const { numLayers: L, hiddenSize: C, numHeads: H, vocabSize: V } = config;
  const packed = documentSpan !== undefined;
  const perC = FLOATS_PER_TOKEN_LAYER_C + (packed ? PACKED_FLOATS_PER_TOKEN_LAYER_C : 0);
  const layer = perC * C + ATTENTION_COPIES * H * Math.min(seqLen, documentSpan ?? seqLen);
  const tokens = rows * seqLen;
  if (!checkpointed) return 4 * tokens * (L * layer + FLOATS_PER_TOKEN_V * V);
  const logitRows = Math.min(tokens, lossChunkRows(V));
  const kept = L * CHECKPOINT_FLOATS_PER_TOKEN_LAYER_C * C + layer;
  return 4 * (tokens * kept + logitRows * FLOATS_PER_TOKEN_V * V);
}

/** Bytes per value of a linear layer's frozen W stored as each --base-dtype (nf4: 4 bits and an f32 per 64). */
export const BASE_DTYPE_BYTES: Record<BaseDtype, number> = {
  f32: 4,
  bf16: 2,
  f16: 2,
  nf4: 0.5 + 4 / 64,
};

/** What the weights are: all of them, and how many of those are linear W stored as `baseDtype`. */
export interface WeightsEstimate {
  parameters: number;
  fullFinetune: boolean;
  /**
   * Fully fine-tuned: the optimizer's state floats per weight (core's
   * stateFloatsPerValue); absent: AdamW's 2 (exp_avg, exp_avg_sq).
   */
  optimizerFloats?: number;
  /** Values of the linear layers' W (packed by --base-dtype; 0 when not known). */
  linearParameters?: number;
  baseDtype?: BaseDtype;
}

/**
 * Bytes of weights and optimizer state: full fine-tuning keeps each weight,
 * its gradient and the optimizer's state (AdamW: m and v, 4 floats in all;
 * SGD without momentum: 2).
 */
export function parameterBytes(w: WeightsEstimate): number {
  const packed = (w.linearParameters ?? 0) * (4 - BASE_DTYPE_BYTES[w.baseDtype ?? 'f32']);
  const floats = w.fullFinetune ? 2 + (w.optimizerFloats ?? ADAMW_STATE_FLOATS) : 1;
  return 4 * w.parameters * floats - packed;
}

/** AdamW's state floats per weight: exp_avg and exp_avg_sq. */
const ADAMW_STATE_FLOATS = 2;

/** What a micro-batch may use on the wasm heap, given the run's weights. */
export function wasmActivationBudget(w: WeightsEstimate): number {
  return ACTIVATION_SHARE * WASM_HEAP_BYTES - parameterBytes(w);
}

/** The most rows per micro-batch whose activations fit `budget` (at least 1). */
export function largestMicroBatch(
  config: EstimateConfig,
  seqLen: number,
  budget: number,
  checkpointed = false,
  documentSpan?: number,
): number {
  const fits = (rows: number) =>
    activationBytes(config, rows, seqLen, checkpointed, documentSpan) <= budget;
  let hi = 1; // the bytes grow with rows, not in proportion (a checkpointed loss's one chunk)
  while (fits(hi)) hi *= 2;
  let lo = hi / 2; // fits, or 0.5 when 1 does not
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return Math.max(1, Math.floor(lo));
}

/** The longest row (at most `seqLen` tokens) whose activations fit `budget`; 0 when none does. */
export function longestRow(
  config: EstimateConfig,
  seqLen: number,
  budget: number,
  checkpointed = false,
): number {
  let [lo, hi] = [0, seqLen]; // activationBytes(config, 1, lo) fits; above hi is not asked
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (activationBytes(config, 1, mid, checkpointed) <= budget) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
