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
import { nllAndWpoWeights } from './wpo.js';

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
  | 'sigmoid_norm'
  | 'discopop'
  | 'sft';
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
  'discopop',
  'sft',
];

/** The loss types that read label_smoothing (TRL's sigmoid, robust and exo_pair). */
export const SMOOTHED_LOSS_TYPES: readonly DpoLossType[] = ['sigmoid', 'robust', 'exo_pair'];

/**
 * TRL's f_divergence_type (f-DPO, Wang et al. 2023, arXiv 2309.16240): the
 * score f'(exp u) a loss compares in place of a log-ratio u; reverse_kl is DPO's (u itself).
 */
export type FDivergence = 'reverse_kl' | 'forward_kl' | 'js_divergence' | 'alpha_divergence';
export const F_DIVERGENCES: readonly FDivergence[] = [
  'reverse_kl',
  'forward_kl',
  'js_divergence',
  'alpha_divergence',
];

/**
 * The loss types that read only the score difference, so the only ones TRL
 * allows with an f-divergence besides reverse_kl (elsewhere log Z(x) does not cancel).
 */
export const F_DIVERGENCE_LOSS_TYPES: readonly DpoLossType[] = [
  'sigmoid',
  'sigmoid_norm',
  'hinge',
  'ipo',
  'exo_pair',
  'robust',
  'discopop',
  'sft',
];

export interface DpoSettings {
  /** TRL's beta: how far the policy may move from the reference (default 0.1). */
  beta: number;
  /** TRL's loss_type: one, or several (MPO) summed with `lossWeights` (absent: sigmoid, DPO's own). */
  loss?: DpoLossType | readonly DpoLossType[];
  /** TRL's loss_weights, one per loss type (absent: 1 each). */
  lossWeights?: readonly number[];
  /** TRL's label_smoothing (SMOOTHED_LOSS_TYPES): the share of pairs taken to be mislabelled. */
  labelSmoothing?: number;
  /** TRL's f_divergence_type (absent: reverse_kl, DPO's). */
  fDivergence?: FDivergence;
  /** TRL's f_alpha_divergence_coef, for alpha_divergence (absent: 0.5, TRL's default). */
  fAlpha?: number;
  /** TRL's discopop_tau, DiscoPOP's temperature (absent: 0.05, TRL's default). */
  discopopTau?: number;
  /**
   * TRL's ld_alpha (LD-DPO, Liu et al. 2024, arXiv 2409.06411): the weight of
   * a pair's response tokens past the shorter response's length, in every
   * log-probability the loss and the logs read (absent: 1, plain DPO).
   */
  ldAlpha?: number;
  /**
   * TRL's use_weighting (WPO, Zhou et al. 2024, arXiv 2406.11827): each
   * pair's loss times the policy's length-normalised probabilities of its
   * two responses (wpo.ts).
   */
  useWeighting?: boolean;
}

/** TRL's DPOConfig.beta default. */
export const DEFAULT_DPO_BETA = 0.1;
/** TRL's f_alpha_divergence_coef and discopop_tau defaults. */
export const DEFAULT_F_ALPHA = 0.5;
export const DEFAULT_DISCOPOP_TAU = 0.05;

/** A DPO run's loss types with their weights (TRL's loss_type and loss_weights). */
export function dpoLossTerms(s: DpoSettings): { type: DpoLossType; weight: number }[] {
  const types = typeof s.loss === 'string' ? [s.loss] : (s.loss ?? ['sigmoid']);
  return types.map((type, i) => ({ type, weight: s.lossWeights?.[i] ?? 1 }));
}

/**
 * What a pair's losses read, [B] each: the chosen and rejected log-ratios to
 * the reference (c, r); h, the difference of their scores (the f-divergence's;
 * c - r for DPO's reverse KL); hMean, the same on scores divided by each
 * response's labelled tokens (IPO, sigmoid_norm); and the chosen response's
 * mean token NLL (sft).
 */
type PairTerms = {
  c: tf.Tensor1D;
  r: tf.Tensor1D;
  h: tf.Tensor1D;
  hMean: tf.Tensor1D;
  chosenNll: tf.Tensor1D;
};

/** -log sigmoid(x) = softplus(-x), and log sigmoid(x). */
const nls = (x: tf.Tensor) => tf.softplus(tf.neg(x));
const logSigmoid = (x: tf.Tensor) => tf.neg(nls(x));

/** -(1 - e) log sigmoid(z) - e log sigmoid(-z): the sigmoid loss with label smoothing e. */
export const smoothedSigmoid = (z: tf.Tensor, e = 0): tf.Tensor =>
  e > 0 ? tf.add(tf.mul(nls(z), 1 - e), tf.mul(nls(tf.neg(z)), e)) : nls(z);

/**
 * Each pair's loss, [B], as TRL's DPOTrainer._compute_loss computes it for
 * each loss_type (its chosen and rejected log-ratios c and r, its delta_score h).
 */
const PAIR_LOSSES: { [K in DpoLossType]: (d: PairTerms, s: DpoSettings) => tf.Tensor } = {
  // -(1 - e) log sigmoid(beta h) - e log sigmoid(-beta h)
  sigmoid: ({ h }, { beta, labelSmoothing }) => smoothedSigmoid(tf.mul(h, beta), labelSmoothing),
  // (h - 1 / (2 beta))^2, on length-averaged scores
  ipo: ({ hMean }, { beta }) => tf.square(tf.sub(hMean, 1 / (2 * beta))),
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
  // APO-down: sigmoid(beta c) + 1 - sigmoid(beta (c - r))
  apo_down: ({ c, r }, { beta }) =>
    tf.add(tf.sigmoid(tf.mul(c, beta)), tf.sub(1, tf.sigmoid(tf.mul(tf.sub(c, r), beta)))),
  // BCO (pairs; TRL 1.x, no running mean): -log sigmoid(beta c) - log sigmoid(-beta r)
  bco_pair: ({ c, r }, { beta }) => tf.add(nls(tf.mul(c, beta)), nls(tf.mul(r, -beta))),
  // -log sigmoid(beta h), on length-averaged scores
  sigmoid_norm: ({ hMean }, { beta }) => nls(tf.mul(hMean, beta)),
  // DiscoPOP (Chris Lu et al. 2024, arXiv 2406.08414, eq. 5): the logistic and the
  // exponential loss of z = beta h, mixed by sigmoid(z / tau)
  discopop: ({ h }, { beta, discopopTau = DEFAULT_DISCOPOP_TAU }) => {
    const z = tf.mul(h, beta);
    const mix = tf.sigmoid(tf.div(z, discopopTau));
    return tf.add(tf.mul(nls(z), tf.sub(1, mix)), tf.mul(tf.exp(tf.neg(z)), mix));
  },
  // The chosen response's token NLL (TRL: its mean over the micro-batch's chosen tokens;
  // here per pair, equal where a batch's chosen responses have one length)
  sft: ({ chosenNll }) => chosenNll,
};

/** The score f'(exp u) of log-ratios u under each f-divergence (TRL's chosen_scores, rejected_scores). */
const SCORES: { [K in FDivergence]: (u: tf.Tensor, s: DpoSettings) => tf.Tensor } = {
  reverse_kl: (u) => u,
  // f'(t) = 1 - 1/t
  forward_kl: (u) => tf.sub(1, tf.exp(tf.neg(u))),
  // f'(t) = log(2t / (t + 1)) = log 2 + log sigmoid(u)
  js_divergence: (u) => tf.add(Math.LN2, logSigmoid(u)),
  // f'(t) = (t^(a - 1) - 1) / (a - 1), its exponent held below 80 as TRL's; a = 1 is reverse_kl
  alpha_divergence: (u, { fAlpha = DEFAULT_F_ALPHA }) => {
    if (Math.abs(fAlpha - 1) < 1e-6) return u;
    const k = fAlpha - 1;
    return tf.div(tf.sub(tf.exp(tf.minimum(tf.mul(u, k), 80)), 1), k);
  },
};

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

/**
 * One pass's log-probabilities of pair-ordered sequences, [S] each: `sums`
 * weighted by LD-DPO's `weights` [S*T] where given (ldWeights), and `plain`,
 * unweighted (the same tensor without weights); with `wpo`, also each
 * sequence's WPO weight (wpo.ts), from the same logits.
 */
export function weightedLogps(
  model: CausalLM,
  seqs: TokenBatch,
  options: ForwardPassOptions,
  weights: Float32Array | null,
  wpo = false,
): { sums: tf.Tensor1D; plain: tf.Tensor1D; wpo?: tf.Tensor1D } {
  const { batchSize: S, seqLen: T } = seqs;
  return tf.tidy(() => {
    const { nll, weights: wpoWeights } = wpo
      ? nllAndWpoWeights(model, seqs, options)
      : { nll: positionNll(model, seqs, options), weights: undefined }; // [S*T], 0 unlabelled
    const plain = tf.neg(tf.sum(nll.reshape([S, T]), 1)) as tf.Tensor1D;
    const extra = wpoWeights ? { wpo: wpoWeights } : {};
    if (!weights) return { sums: plain, plain, ...extra };
    const sums = tf.neg(tf.sum(tf.mul(nll.reshape([S, T]), tf.tensor2d(weights, [S, T])), 1));
    return { sums: sums as tf.Tensor1D, plain, ...extra };
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

/**
 * What DPO's losses read of a pair batch, [2B] pair-ordered: the policy's and
 * the reference's log-probabilities (LD-DPO-weighted where set), the policy's
 * unweighted ones (sft), and each sequence's labelled tokens.
 */
export interface DpoInputs {
  logps: tf.Tensor1D;
  ref: tf.Tensor1D;
  plain: tf.Tensor1D;
  counts: Float32Array;
}

/** Each pair's loss, [B]: the weighted sum of its loss types' (TRL's loss_type and loss_weights). */
export function dpoPairLosses(
  { logps, ref, plain, counts }: DpoInputs,
  settings: DpoSettings,
): tf.Tensor1D {
  return tf.tidy(() => {
    const [c, r] = sides(tf.sub(logps, ref) as tf.Tensor1D); // [B] each
    const score = (u: tf.Tensor1D) => SCORES[settings.fDivergence ?? 'reverse_kl'](u, settings);
    const [sc, sr] = [score(c), score(r)];
    const [nc, nr] = sides(tf.tensor1d(counts.map((n) => Math.max(n, 1))));
    const terms: PairTerms = {
      c,
      r,
      h: tf.sub(sc, sr) as tf.Tensor1D,
      hMean: tf.sub(tf.div(sc, nc), tf.div(sr, nr)) as tf.Tensor1D,
      chosenNll: tf.neg(tf.div(sides(plain)[0], nc)) as tf.Tensor1D,
    };
    const parts = dpoLossTerms(settings).map(({ type, weight }) =>
      tf.mul(PAIR_LOSSES[type](terms, settings), weight),
    );
    return (parts.length === 1 ? parts[0]! : tf.addN(parts)) as tf.Tensor1D;
  });
}
