// How much memory one training micro-batch takes, so a run can pick a
// micro-batch that fits (or refuse one that does not) before it starts,
// instead of aborting inside wasm ("Aborted(), build with -sASSERTIONS") when
// the heap passes wasm32's 4 GiB.
//
// The coefficients are measured, not derived: tfjs's tape keeps every
// intermediate of the forward pass (GELU's, LayerNorm's, the attention's
// reshapes) until the backward pass, ~190 floats of width C per token and
// layer. Peak RSS of one `train --steps 1` on the default model (C 256,
// 4 layers, 8 heads, vocab 257) at B x T = 25x32, 50x32, 100x32, 50x16 and
// 25x128 fits 823 KB per token (+/- 5%) and ~9 copies of the H x T
// attention scores per token and layer.
import type { BaseDtype } from '@lorafleet/core';
import type { ModelConfig } from './causal-lm.js';

/** What the estimate reads of a model: any family's config. */
export type EstimateConfig = Pick<
  ModelConfig,
  'numLayers' | 'hiddenSize' | 'numHeads' | 'vocabSize'
>;

/** wasm32 addresses 4 GiB. */
export const WASM_HEAP_BYTES = 4 * 1024 ** 3;
/** Share of the heap a micro-batch's activations may take: the rest is weights, optimizer, slack. */
export const ACTIVATION_SHARE = 0.75;

const FLOATS_PER_TOKEN_LAYER_C = 190;
const ATTENTION_COPIES = 9;
const FLOATS_PER_TOKEN_V = 8;

/** Bytes the activations of one micro-batch of `rows` x `seqLen` tokens take during a step. */
export function activationBytes(config: EstimateConfig, rows: number, seqLen: number): number {
  const { numLayers: L, hiddenSize: C, numHeads: H, vocabSize: V } = config;
  const perToken =
    L * (FLOATS_PER_TOKEN_LAYER_C * C + ATTENTION_COPIES * H * seqLen) + FLOATS_PER_TOKEN_V * V;
  return 4 * rows * seqLen * perToken;
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
  /** Values of the linear layers' W (packed by --base-dtype; 0 when not known). */
  linearParameters?: number;
  baseDtype?: BaseDtype;
}

/** Bytes of weights and optimizer state: full fine-tuning keeps 4 floats per weight (w, grad, m, v). */
export function parameterBytes(w: WeightsEstimate): number {
  const packed = (w.linearParameters ?? 0) * (4 - BASE_DTYPE_BYTES[w.baseDtype ?? 'f32']);
  return 4 * w.parameters * (w.fullFinetune ? 4 : 1) - packed;
}

/** What a micro-batch may use on the wasm heap, given the run's weights. */
export function wasmActivationBudget(w: WeightsEstimate): number {
  return ACTIVATION_SHARE * WASM_HEAP_BYTES - parameterBytes(w);
}

/** The most rows per micro-batch whose activations fit `budget` (at least 1). */
export function largestMicroBatch(config: EstimateConfig, seqLen: number, budget: number): number {
  return Math.max(1, Math.floor(budget / activationBytes(config, 1, seqLen)));
}

/** The longest row (at most `seqLen` tokens) whose activations fit `budget`; 0 when none does. */
export function longestRow(config: EstimateConfig, seqLen: number, budget: number): number {
  let [lo, hi] = [0, seqLen]; // activationBytes(config, 1, lo) fits; above hi is not asked
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (activationBytes(config, 1, mid) <= budget) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
