// Preference objectives without a reference model: ORPO (Hong et al. 2024,
// arXiv 2403.07691; TRL's ORPOTrainer), SimPO (Meng et al. 2024, arXiv
// 2405.14734; TRL's CPOTrainer with loss_type "simpo") and CPO (Xu et al.
// 2024, arXiv 2401.08417; TRL's CPOTrainer). ORPO and SimPO compare the
// length-averaged log-probabilities of a pair's responses,
//   c = mean log pi(y_t | y_<t) over the chosen response's labelled tokens,
//   r = the same over the rejected response's,
// and need one forward pass of the policy, no reference pass:
//   ORPO:  loss = NLL(prompt + chosen) - beta log sigmoid(log odds(c) - log odds(r)),
//          log odds(p) = p - log(1 - exp(p))      (the odds of mean probability exp(p))
//   SimPO: loss = -log sigmoid(beta (c - r) - gamma)   (+ alpha (-c): TRL's CPO-SimPO)
//   CPO:   loss = DPO's sigmoid, hinge or IPO loss on C - R, no reference,
//                 + alpha (-c)
// where CPO's C and R are the summed log-probabilities (the means for IPO).
// -c is the chosen response's mean token NLL, per pair (SimPO's and CPO's
// NLL term); ORPO's is TRL's ORPOTrainer's, over the chosen prompt and
// response (orpoLogps). TRL averages its NLL terms over the micro-batch's
// chosen tokens instead; the two agree when a batch's chosen sequences have
// one length. Rewards,
// as TRL logs them, are beta times what the loss compares: c and r (ORPO,
// SimPO), C and R (CPO).
import { tf } from '@lorafleet/core';
import type { CausalLM, ForwardPassOptions } from './causal-lm.js';
import { type DpoSettings, dpoPairLosses, smoothedSigmoid } from './dpo.js';
import { labelledTokenCounts, pairSequences, sequenceLogps, sides } from './pair-logps.js';
import { IGNORE_INDEX, type TokenBatch, shiftedLabels } from './labels.js';
import { positionNll } from './loss.js';

export interface OrpoSettings {
  /** TRL's ORPOConfig.beta, the paper's lambda: the odds-ratio term's weight (default 0.1). */
  beta: number;
}

export interface SimpoSettings {
  /** The reward scale (SimPO's beta; default 2.0, the paper's). */
  beta: number;
  /** The target reward margin (TRL's simpo_gamma; default 1.0: the paper's gamma / beta of 0.5). */
  gamma: number;
  /** TRL's cpo_alpha: the weight of the chosen response's NLL (CPO-SimPO); absent: 0, SimPO's. */
  alpha?: number;
  /** TRL's label_smoothing: the share of pairs taken to be mislabelled (absent: 0). */
  labelSmoothing?: number;
  /** TRL's CPOConfig.alpha: AlphaPO's reward shape (alphaPoRewards); absent or 0: log-probabilities. */
  alphaPo?: number;
}

/** TRL's CPOConfig.loss_type values besides simpo (--objective simpo). */
export type CpoLossType = 'sigmoid' | 'hinge' | 'ipo';
export const CPO_LOSS_TYPES: readonly CpoLossType[] = ['sigmoid', 'hinge', 'ipo'];

export interface CpoSettings {
  /** TRL's CPOConfig.beta (default 0.1). */
  beta: number;
  /** TRL's loss_type (absent: sigmoid, CPO's own). */
  loss?: CpoLossType;
  /** TRL's cpo_alpha: the weight of the chosen response's NLL (default 1.0). */
  alpha: number;
  /** TRL's label_smoothing, for the sigmoid loss: the share of pairs taken to be mislabelled (absent: 0). */
  labelSmoothing?: number;
  /** TRL's CPOConfig.alpha: AlphaPO's reward shape (alphaPoRewards); absent or 0: log-probabilities. */
  alphaPo?: number;
}

export const DEFAULT_ORPO_BETA = 0.1;
export const DEFAULT_SIMPO_BETA = 2.0;
export const DEFAULT_SIMPO_GAMMA = 1.0;
export const DEFAULT_CPO_BETA = 0.1;
export const DEFAULT_CPO_ALPHA = 1.0;

/**
 * log(1 - exp(p)) for p < 0, as -expm1 keeps it accurate near 0. p is held
 * below -1e-12: a response whose every token has probability 1 in float32
 * would make it -inf (TRL's log1p(-exp(p)) too).
 */
const log1mExp = (p: tf.Tensor1D): tf.Tensor1D =>
  tf.log(tf.neg(tf.expm1(tf.minimum(p, -1e-12)))) as tf.Tensor1D;

/**
 * ORPO's log odds ratio of each pair, [B], from the responses'
 * length-averaged log-probabilities [2B]: log odds(c) - log odds(r) (TRL's
 * log_odds_chosen; its log sigmoid, TRL's log_odds_ratio).
 */
export function orpoLogOdds(avgLogps: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => {
    const [c, r] = sides(avgLogps); // [B] each
    return tf.sub(tf.sub(c, r), tf.sub(log1mExp(c), log1mExp(r))) as tf.Tensor1D;
  });
}

/**
 * ORPO's loss per pair, [B], from the responses' length-averaged
 * log-probabilities [2B] and each chosen sequence's mean NLL [B] (orpoLogps).
 */
export function orpoPairLosses(
  avgLogps: tf.Tensor1D,
  chosenNll: tf.Tensor1D,
  { beta }: OrpoSettings,
): tf.Tensor1D {
  return tf.tidy(() => {
    // -log sigmoid(z) = softplus(-z)
    const oddsLoss = tf.softplus(tf.neg(orpoLogOdds(avgLogps)));
    return tf.add(chosenNll, tf.mul(oddsLoss, beta)) as tf.Tensor1D;
  });
}

/**
 * ORPO's inputs from one policy pass: each response's mean log-probability
 * over its labelled tokens [2B], and each chosen sequence's mean NLL over its
 * prompt and response [B]: TRL's ORPOTrainer takes its NLL term "over the
 * full prompt and response", every token after the first.
 */
export function orpoLogps(
  model: CausalLM,
  batch: TokenBatch,
  options: ForwardPassOptions = {},
): { means: tf.Tensor1D; chosenNll: tf.Tensor1D } {
  const seqs = pairSequences(batch);
  const whole = withChosenPrompts(seqs);
  const { batchSize: S, seqLen: T } = seqs;
  const V = model.modelConfig.vocabSize;
  const response = Float32Array.from(shiftedLabels(seqs, V), (l) => (l === IGNORE_INDEX ? 0 : 1));
  const counts = labelledTokenCounts(seqs, V).map((n) => Math.max(n, 1)); // [S]
  const wholeCounts = labelledTokenCounts(whole, V).map((n) => Math.max(n, 1));
  return tf.tidy(() => {
    const nll = positionNll(model, whole, options).reshape([S, T]); // [S, T], 0 unlabelled
    const responseNll = tf.sum(tf.mul(nll, tf.tensor2d(response, [S, T])), 1); // [S]
    const means = tf.neg(tf.div(responseNll, tf.tensor1d(counts))) as tf.Tensor1D;
    const [chosenNll] = sides(tf.div(tf.sum(nll, 1), tf.tensor1d(wholeCounts)) as tf.Tensor1D);
    return { means, chosenNll };
  });
}

/** 2B sequences with each chosen one's prompt labelled too (from its second token). */
function withChosenPrompts(seqs: TokenBatch): TokenBatch {
  const { batchSize: S, seqLen: T } = seqs;
  const labels = Int32Array.from(seqs.labels);
  for (let s = 0; s < S; s += 2) {
    const row = labels.subarray(s * T, (s + 1) * T);
    const first = row.findIndex((l) => l !== IGNORE_INDEX);
    for (let t = 1; t < first; t++) row[t] = seqs.ids[s * T + t]!;
  }
  return { ...seqs, labels };
}

/**
 * AlphaPO's reward shape (Gupta et al. 2025, arXiv 2501.03884; TRL's
 * CPOConfig.alpha) of log-probabilities u: (1 - p^-alpha) / alpha with
 * p = exp(u), which the SimPO and CPO losses compare in place of u; alpha
 * 0 (or absent): u itself.
 */
export function alphaPoRewards(logps: tf.Tensor1D, alpha = 0): tf.Tensor1D {
  if (alpha === 0) return logps;
  return tf.tidy(() => tf.div(tf.sub(1, tf.exp(tf.mul(logps, -alpha))), alpha) as tf.Tensor1D);
}

/** SimPO's loss per pair, [B], from the length-averaged log-probabilities [2B]. */
export function simpoPairLosses(
  avgLogps: tf.Tensor1D,
  { beta, gamma, alpha = 0, labelSmoothing, alphaPo }: SimpoSettings,
): tf.Tensor1D {
  return tf.tidy(() => {
    const [rc, rr] = sides(alphaPoRewards(avgLogps, alphaPo));
    const z = tf.sub(tf.mul(tf.sub(rc, rr), beta), gamma);
    return withChosenNll(smoothedSigmoid(z, labelSmoothing), sides(avgLogps)[0], alpha);
  });
}

/**
 * CPO's loss per pair, [B]: DPO's loss of `loss` type with no reference
 * (on the summed log-probabilities; IPO on the means) plus alpha times the
 * chosen response's mean token NLL.
 */
export function cpoPairLosses(
  logps: PairLogps,
  { beta, loss, alpha, labelSmoothing, alphaPo }: CpoSettings,
): tf.Tensor1D {
  return tf.tidy(() => {
    // What the loss compares, AlphaPO-shaped; IPO's means already averaged (counts of 1)
    const compared = alphaPoRewards(cpoCompares(logps, loss), alphaPo);
    const dpo: DpoSettings = { beta, ...(loss ? { loss } : {}), labelSmoothing };
    const ones = new Float32Array(logps.counts.length).fill(1);
    const inputs = {
      logps: compared,
      ref: tf.zerosLike(compared),
      plain: logps.sums,
      counts: ones,
    };
    return withChosenNll(dpoPairLosses(inputs, dpo), sides(logps.means)[0], alpha);
  });
}

/** What CPO's loss and rewards compare: the summed log-probabilities, or IPO's means. */
export const cpoCompares = (logps: PairLogps, loss?: CpoLossType): tf.Tensor1D =>
  loss === 'ipo' ? logps.means : logps.sums;

/** `losses` + alpha (-c), c the chosen responses' mean log-probabilities; alpha 0: `losses`. */
function withChosenNll(losses: tf.Tensor, c: tf.Tensor1D, alpha: number): tf.Tensor1D {
  return (alpha === 0 ? losses : tf.sub(losses, tf.mul(c, alpha))) as tf.Tensor1D;
}

/** Each sequence's mean log-probability over its labelled tokens, [2B] for a pair batch. */
export function averageLogps(
  model: CausalLM,
  batch: TokenBatch,
  options: ForwardPassOptions = {},
): tf.Tensor1D {
  return sequenceLogps(model, pairSequences(batch), options, true);
}

/** A pair batch's summed and mean log-probabilities, [2B] each (pair-ordered). */
export interface PairLogps {
  sums: tf.Tensor1D;
  means: tf.Tensor1D;
  /** Each sequence's labelled tokens. */
  counts: Float32Array;
}

/** One policy pass: each sequence's summed log-probability, and that over its labelled tokens. */
export function pairLogps(
  model: CausalLM,
  batch: TokenBatch,
  options: ForwardPassOptions = {},
): PairLogps {
  const seqs = pairSequences(batch);
  const counts = labelledTokenCounts(seqs, model.modelConfig.vocabSize);
  const divisors = counts.map((n) => Math.max(n, 1));
  return tf.tidy(() => {
    const sums = sequenceLogps(model, seqs, options);
    return { sums, means: tf.div(sums, tf.tensor1d(divisors)) as tf.Tensor1D, counts };
  });
}

/**
 * Rewards as TRL logs them, [B] chosen and [B] rejected, from [2B]
 * pair-ordered log-probabilities: beta times each (ORPO and SimPO: the mean
 * log-probabilities; DPO: their log-ratios to the reference).
 */
export function pairRewards(logps: tf.Tensor, beta: number): [tf.Tensor1D, tf.Tensor1D] {
  return tf.tidy(() => sides(tf.mul(logps, beta) as tf.Tensor1D));
}
