// Direct Preference Optimization (Rafailov et al. 2023, arXiv 2305.18290) as
// TRL's DPOTrainer computes it. For a pair with chosen response c and
// rejected response r after the same prompt:
//   logp(y)  = sum of log pi(y_t | y_<t) over the response's labelled tokens
//   z        = beta * ((logp(c) - ref(c)) - (logp(r) - ref(r)))
//   loss     = -log sigmoid(z) = softplus(-z)      (the default "sigmoid"; PAIR_LOSSES has TRL's others)
// where ref is logp under the reference model: for a LoRA run, the base
// model with the adapter off (PEFT's disable_adapter, TRL's default for a
// PEFT model). A batch holds pairs as rows of 2T ([chosen | rejected], data's
// preference.ts); the loss is summed over pairs, so workers add their sums
// and divide by the global pair count, as tokens are for the SFT loss.
import { tf } from '@lorafleet/core';
import type { CausalLM, ForwardPassOptions } from './causal-lm.js';
import { IGNORE_INDEX, type TokenBatch, shiftedLabels } from './labels.js';
import { positionNll } from './loss.js';

/** TRL's DPOConfig.loss_type values implemented here. */
export type DpoLossType =
  | 'sigmoid'
  | 'ipo'
  | 'hinge'
  | 'robust'
  | 'exo_pair'
  | 'sppo_hard'
  | 'nca_pair'
  | 'apo_zero'
  | 'apo_down'
  | 'bco_pair'
  | 'sigmoid_norm';
export const DPO_LOSS_TYPES: readonly DpoLossType[] = [
  'sigmoid',
  'ipo',
  'hinge',
  'robust',
  'exo_pair',
  'sppo_hard',
  'nca_pair',
  'apo_zero',
  'apo_down',
  'bco_pair',
  'sigmoid_norm',
];

/** The loss types that read label_smoothing (TRL's sigmoid, robust and exo_pair). */
export const SMOOTHED_LOSS_TYPES: readonly DpoLossType[] = ['sigmoid', 'robust', 'exo_pair'];

export interface DpoSettings {
  /** TRL's beta: how far the policy may move from the reference (default 0.1). */
  beta: number;
  /** TRL's loss_type (absent: sigmoid, DPO's own). */
  loss?: DpoLossType;
  /** TRL's label_smoothing (SMOOTHED_LOSS_TYPES): the share of pairs taken to be mislabelled. */
  labelSmoothing?: number;
}

/** TRL's DPOConfig.beta default. */
export const DEFAULT_DPO_BETA = 0.1;

/** A batch's log-ratios to the reference, [B] each: c (chosen), r (rejected), h = c - r. */
type LogRatios = { c: tf.Tensor1D; r: tf.Tensor1D; h: tf.Tensor1D };

/** -log sigmoid(x) = softplus(-x), and log sigmoid(x). */
const nls = (x: tf.Tensor) => tf.softplus(tf.neg(x));
const logSigmoid = (x: tf.Tensor) => tf.neg(nls(x));

/**
 * Each pair's loss, [B], as TRL's DPOTrainer.dpo_loss computes it for each
 * loss_type (its `logits` is h here, its chosen and rejected log-ratios c and r).
 */
const PAIR_LOSSES: { [K in DpoLossType]: (d: LogRatios, s: DpoSettings) => tf.Tensor } = {
  // -(1 - e) log sigmoid(beta h) - e log sigmoid(-beta h)
  sigmoid: ({ h }, { beta, labelSmoothing: e = 0 }) => {
    const z = tf.mul(h, beta);
    return e > 0 ? tf.add(tf.mul(nls(z), 1 - e), tf.mul(nls(tf.neg(z)), e)) : nls(z);
  },
  // (h - 1 / (2 beta))^2, on length-averaged log-probabilities (sequenceLogps' `average`)
  ipo: ({ h }, { beta }) => tf.square(tf.sub(h, 1 / (2 * beta))),
  // max(0, 1 - beta h)
  hinge: ({ h }, { beta }) => tf.relu(tf.sub(1, tf.mul(h, beta))),
  // ((1 - e) (-log sigmoid(beta h)) + e log sigmoid(-beta h)) / (1 - 2e): unbiased under flipped labels
  robust: ({ h }, { beta, labelSmoothing: e = 0 }) => {
    const z = tf.mul(h, beta);
    return tf.div(tf.sub(tf.mul(nls(z), 1 - e), tf.mul(nls(tf.neg(z)), e)), 1 - 2 * e);
  },
  // EXO: sigmoid(z) (log sigmoid(z) - log(1 - e)) + sigmoid(-z) (log sigmoid(-z) - log e), z = beta h, e = 1e-3 if 0
  exo_pair: ({ h }, { beta, labelSmoothing }) => {
    const e = labelSmoothing || 1e-3;
    const z = tf.mul(h, beta);
    const side = (x: tf.Tensor, target: number) =>
      tf.mul(tf.sigmoid(x), tf.sub(logSigmoid(x), Math.log(target)));
    return tf.add(side(z, 1 - e), side(tf.neg(z), e));
  },
  // SPPO (hard): (c - 1 / (2 beta))^2 + (r + 1 / (2 beta))^2
  sppo_hard: ({ c, r }, { beta }) =>
    tf.add(tf.square(tf.sub(c, 0.5 / beta)), tf.square(tf.add(r, 0.5 / beta))),
  // NCA: -log sigmoid(beta c) - 0.5 log sigmoid(-beta c) - 0.5 log sigmoid(-beta r)
  nca_pair: ({ c, r }, { beta }) => {
    const [bc, br] = [tf.mul(c, beta), tf.mul(r, beta)];
    return tf.add(nls(bc), tf.mul(tf.add(nls(tf.neg(bc)), nls(tf.neg(br))), 0.5));
  },
  // APO-zero: 1 - sigmoid(beta c) + sigmoid(beta r)
  apo_zero: ({ c, r }, { beta }) =>
    tf.add(tf.sub(1, tf.sigmoid(tf.mul(c, beta))), tf.sigmoid(tf.mul(r, beta))),
  // APO-down: sigmoid(beta c) + 1 - sigmoid(beta h)
  apo_down: ({ c, h }, { beta }) =>
    tf.add(tf.sigmoid(tf.mul(c, beta)), tf.sub(1, tf.sigmoid(tf.mul(h, beta)))),
  // BCO (pairs; TRL 1.x, no running mean): -log sigmoid(beta c) - log sigmoid(-beta r)
  bco_pair: ({ c, r }, { beta }) => tf.add(nls(tf.mul(c, beta)), nls(tf.mul(r, -beta))),
  // -log sigmoid(beta h), on length-averaged log-probabilities (sequenceLogps' `average`)
  sigmoid_norm: ({ h }, { beta }) => nls(tf.mul(h, beta)),
};

/** IPO and sigmoid_norm compare length-averaged log-probabilities (TRL divides by the response's tokens). */
export const averagesLogps = (s: DpoSettings): boolean =>
  s.loss === 'ipo' || s.loss === 'sigmoid_norm';

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

/** Sequence log-probabilities [S] divided by each one's labelled tokens (at least 1). */
export function perToken(logps: tf.Tensor1D, counts: Float32Array): tf.Tensor1D {
  return tf.div(logps, tf.tensor1d(counts.map((n) => Math.max(n, 1)))) as tf.Tensor1D;
}

/** Each sequence's labelled tokens (those its log-probability sums over), [S]. */
export function labelledTokenCounts(seqs: TokenBatch, vocabSize: number): Float32Array {
  const shifted = shiftedLabels(seqs, vocabSize); // [S * T]
  const counts = new Float32Array(seqs.batchSize);
  shifted.forEach((l, i) => l !== IGNORE_INDEX && counts[Math.floor(i / seqs.seqLen)]!++);
  return counts;
}

/**
 * The reference's log-probabilities of a pair batch, [2B]: the model with
 * every adapter off (PEFT's disable_adapter), or on REFERENCE_ADAPTER where a
 * layer has it; no dropout, nothing recorded for backward. Call it outside
 * the taped pass and pass the result in.
 */
export function referenceLogps(model: CausalLM, batch: TokenBatch): tf.Tensor1D {
  return withReference(model, () => sequenceLogps(model, pairSequences(batch)));
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

/** The chosen and rejected log-ratios to the reference and their margin, [B] each. */
function logRatios(logps: tf.Tensor1D, ref: tf.Tensor1D): LogRatios {
  const B = logps.shape[0] / 2;
  const d = tf.sub(logps, ref).reshape([B, 2]); // [B, 2]: chosen, rejected
  const [c, r] = (tf.split(d, 2, 1) as [tf.Tensor2D, tf.Tensor2D]).map((t) => t.reshape([B])) as [
    tf.Tensor1D,
    tf.Tensor1D,
  ];
  return { c, r, h: tf.sub(c, r) as tf.Tensor1D };
}

/** Each pair's loss, [B], from the policy's and the reference's log-probabilities [2B]. */
export function dpoPairLosses(
  logps: tf.Tensor1D,
  ref: tf.Tensor1D,
  settings: DpoSettings,
): tf.Tensor1D {
  return tf.tidy(
    () => PAIR_LOSSES[settings.loss ?? 'sigmoid'](logRatios(logps, ref), settings) as tf.Tensor1D,
  );
}
