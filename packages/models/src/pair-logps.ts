// A pair batch's sequences and their log-probabilities, for every preference
// objective: the [B, 2T] rows as 2B sequences, each one's log-probability
// (summed, LD-DPO-weighted, or per token; with WPO's weights where asked),
// and the reference pass (the adapters off, or the frozen "ref" adapter).
import { softmaxCrossEntropy, tf } from '@lorafleet/core';
import type { CausalLM, ForwardPassOptions } from './causal-lm.js';
import { IGNORE_INDEX, type TokenBatch, shiftedLabels } from './labels.js';
import { positionColumns, positionNll } from './loss.js';
import { RESPONSE_COLUMNS, perSequence, responseColumns } from './response-metrics.js';
import { logSumSquaredProbs, wpoWeights } from './wpo.js';

/** A pair batch [B, 2T] as 2B sequences of T: pair b's chosen at 2b, its rejected at 2b + 1. */
export function pairSequences(batch: TokenBatch): TokenBatch {
  const { batchSize: B, seqLen } = batch;
  if (seqLen % 2 !== 0) {
    throw new Error(`a preference batch's rows hold two sequences: ${seqLen} tokens is odd`);
  }
  return { ids: batch.ids, labels: batch.labels, batchSize: 2 * B, seqLen: seqLen / 2 };
}

/** Pairs in the batch with a labelled token on both sides (every pair of prepared data). */
export function countPairs(batch: TokenBatch): number {
  const seqs = pairSequences(batch);
  const T = seqs.seqLen;
  const labelled = (s: number) => {
    for (let t = 1; t < T; t++) if (seqs.labels[s * T + t] !== IGNORE_INDEX) return true;
    return false;
  };
  let n = 0;
  for (let b = 0; b < batch.batchSize; b++) if (labelled(2 * b) && labelled(2 * b + 1)) n++;
  return n;
}

/**
 * Each sequence's summed log-probability of its labelled tokens, [S]; with
 * `average`, divided by how many there are (IPO).
 */
export function sequenceLogps(
  model: CausalLM,
  seqs: TokenBatch,
  options: ForwardPassOptions = {},
  average = false,
): tf.Tensor1D {
  const { batchSize: S, seqLen: T } = seqs;
  const counts = labelledTokenCounts(seqs, model.modelConfig.vocabSize);
  return tf.tidy(() => {
    // A chunk of logits at a time where the token loss takes chunks too (checkpointing, large eval batches)
    const nll = positionNll(model, seqs, options); // [S*T], 0 unlabelled
    const logps = tf.neg(tf.sum(nll.reshape([S, T]), 1)) as tf.Tensor1D; // [S]
    return average ? perToken(logps, counts) : logps;
  });
}

/** What a policy pass computes beside the log-probabilities, from the same logits. */
export interface PassExtras {
  /** Each sequence's WPO weight (wpo.ts). */
  wpo?: boolean;
  /** Each sequence's TRL token metrics (response-metrics.ts). */
  responseMetrics?: boolean;
}

/**
 * One pass's log-probabilities of pair-ordered sequences, [S] each: `sums`
 * weighted by LD-DPO's `weights` [S*T] where given (ldWeights), and `plain`,
 * unweighted (the same tensor without weights); with `extras`, each
 * sequence's WPO weight [S] and its RESPONSE_COLUMNS sums [S, 3], from the
 * same logits (a chunk at a time where the loss takes chunks).
 */
export function weightedLogps(
  model: CausalLM,
  seqs: TokenBatch,
  options: ForwardPassOptions,
  weights: Float32Array | null,
  extras: PassExtras = {},
): { sums: tf.Tensor1D; plain: tf.Tensor1D; wpo?: tf.Tensor1D; metrics?: tf.Tensor2D } {
  const { batchSize: S, seqLen: T } = seqs;
  const V = model.modelConfig.vocabSize;
  const columns = (logits: tf.Tensor2D, labels: tf.Tensor1D) => {
    const nll = softmaxCrossEntropy(logits, labels).expandDims(1) as tf.Tensor2D; // [n, 1]
    const more = [
      ...(extras.wpo ? [logSumSquaredProbs(logits).expandDims(1)] : []), // [n, 1]
      ...(extras.responseMetrics ? [responseColumns(logits, labels)] : []), // [n, 3]
    ];
    return more.length === 0 ? nll : (tf.concat([nll, ...more], 1) as tf.Tensor2D);
  };
  const k = 1 + (extras.wpo ? 1 : 0) + (extras.responseMetrics ? RESPONSE_COLUMNS.length : 0);
  return tf.tidy(() => {
    const all = positionColumns(model, seqs, options, columns, k); // [S*T, k], 0 unlabelled
    const nll = (k === 1 ? all : all.slice([0, 0], [-1, 1])).reshape([-1]) as tf.Tensor1D;
    const plain = tf.neg(tf.sum(nll.reshape([S, T]), 1)) as tf.Tensor1D;
    const wpo = extras.wpo
      ? { wpo: wpoWeights(nll, all.slice([0, 1], [-1, 1]).reshape([-1]), seqs, V) }
      : {};
    const metrics = extras.responseMetrics
      ? { metrics: perSequence(all.slice([0, k - RESPONSE_COLUMNS.length], [-1, -1]), S, T) }
      : {};
    if (!weights) return { sums: plain, plain, ...wpo, ...metrics };
    const sums = tf.neg(tf.sum(tf.mul(nll.reshape([S, T]), tf.tensor2d(weights, [S, T])), 1));
    return { sums: sums as tf.Tensor1D, plain, ...wpo, ...metrics };
  });
}

/**
 * LD-DPO's weight of each position's label, [S*T], for pair-ordered
 * sequences: 1 on a response's first k labelled tokens, k the shorter
 * response's length in its pair, and `ldAlpha` past them (TRL's shared and tail masks).
 */
export function ldWeights(seqs: TokenBatch, vocabSize: number, ldAlpha: number): Float32Array {
  const { batchSize: S, seqLen: T } = seqs;
  const shifted = shiftedLabels(seqs, vocabSize);
  const counts = labelledTokenCounts(seqs, vocabSize);
  const weights = new Float32Array(S * T);
  for (let s = 0; s < S; s++) {
    const pair = s - (s % 2);
    const shared = Math.min(counts[pair]!, counts[pair + 1]!);
    let k = 0;
    for (let t = s * T; t < (s + 1) * T; t++)
      if (shifted[t] !== IGNORE_INDEX) weights[t] = ++k <= shared ? 1 : ldAlpha;
  }
  return weights;
}

/** Sequence log-probabilities [S] divided by each one's labelled tokens (at least 1). */
export function perToken(logps: tf.Tensor1D, counts: Float32Array): tf.Tensor1D {
  return tf.div(logps, tf.tensor1d(counts.map((n) => Math.max(n, 1)))) as tf.Tensor1D;
}

/**
 * Each sequence's tokens under TRL's attention mask, [S]: its prompt and
 * response, up to its last labelled token (what follows is padding).
 * DPOTrainer's num_tokens adds them over the pairs it trains on.
 */
export function inputTokenCounts(seqs: TokenBatch): Uint32Array {
  const T = seqs.seqLen;
  return Uint32Array.from({ length: seqs.batchSize }, (_, s) => {
    for (let t = T - 1; t >= 0; t--) if (seqs.labels[s * T + t] !== IGNORE_INDEX) return t + 1;
    return 0;
  });
}

/** Each sequence's labelled tokens (those its log-probability sums over), [S]. */
export function labelledTokenCounts(seqs: TokenBatch, vocabSize: number): Float32Array {
  const shifted = shiftedLabels(seqs, vocabSize); // [S * T]
  const counts = new Float32Array(seqs.batchSize);
  shifted.forEach((l, i) => l !== IGNORE_INDEX && counts[Math.floor(i / seqs.seqLen)]!++);
  return counts;
}

/**
 * The reference's log-probabilities of a pair batch, [2B] (LD-DPO-weighted
 * with `weights`): the model with
 * every adapter off (PEFT's disable_adapter), or on REFERENCE_ADAPTER where a
 * layer has it; no dropout, nothing recorded for backward. Call it outside
 * the taped pass and pass the result in.
 */
export function referenceLogps(
  model: CausalLM,
  batch: TokenBatch,
  weights: Float32Array | null = null,
): tf.Tensor1D {
  return withReference(model, () => {
    const { sums, plain } = weightedLogps(model, pairSequences(batch), {}, weights);
    if (sums !== plain) plain.dispose();
    return sums;
  });
}

/**
 * The adapter DPO's reference pass switches to where a layer has one: a
 * frozen copy of the adapter a run started from (--init-adapter), as TRL
 * adds "ref" for a PEFT model with a trained adapter. Elsewhere the reference
 * is the layer with its adapter off.
 */
export const REFERENCE_ADAPTER = 'ref';

/** Runs `fn` with every LoRA layer on its REFERENCE_ADAPTER or else none, then back (even on error). */
export function withReference<T>(model: CausalLM, fn: () => T): T {
  const pick = (names: string[]) => (names.includes(REFERENCE_ADAPTER) ? REFERENCE_ADAPTER : null);
  return withAdapters(model, pick, fn);
}

/** Runs `fn` with every LoRA layer's adapter switched off, then back on (even on error). */
export function withAdaptersOff<T>(model: CausalLM, fn: () => T): T {
  return withAdapters(model, () => null, fn);
}

function withAdapters<T>(
  model: CausalLM,
  pick: (adapterNames: string[]) => string | null,
  fn: () => T,
): T {
  const layers = [...model.linears(), ...model.embeddings()];
  const active = layers.map((l) => l.activeAdapter?.name ?? null);
  layers.forEach((l) => l.setActive(pick(l.adapterNames())));
  try {
    return fn();
  } finally {
    layers.forEach((l, i) => l.setActive(active[i]!));
  }
}

/** [2B] pair-ordered values as [B] chosen and [B] rejected. */
export function sides(v: tf.Tensor1D): [tf.Tensor1D, tf.Tensor1D] {
  const B = v.shape[0] / 2;
  const [c, r] = tf.split(v.reshape([B, 2]), 2, 1) as [tf.Tensor2D, tf.Tensor2D];
  return [c.reshape([B]), r.reshape([B])];
}
