// Preference objectives without a reference model: ORPO (Hong et al. 2024,
// arXiv 2403.07691; TRL's ORPOTrainer) and SimPO (Meng et al. 2024, arXiv
// 2405.14734; TRL's CPOTrainer with loss_type "simpo" and cpo_alpha 0).
// Both compare the length-averaged log-probabilities of a pair's responses,
//   c = mean log pi(y_t | y_<t) over the chosen response's labelled tokens,
//   r = the same over the rejected response's,
// and need one forward pass of the policy, no reference pass:
//   ORPO:  loss = -c - beta log sigmoid(log odds(c) - log odds(r)),
//          log odds(p) = p - log(1 - exp(p))      (the odds of mean probability exp(p))
//   SimPO: loss = -log sigmoid(beta (c - r) - gamma)
// ORPO's -c is the chosen response's mean token NLL, per pair as the paper's
// L_SFT (TRL averages it over the micro-batch's chosen tokens instead; the
// two agree when a batch's chosen responses have one length). Rewards, as
// TRL logs them, are beta c and beta r.
import { tf } from '@lorafleet/core';
import type { CausalLM, ForwardPassOptions } from './causal-lm.js';
import { pairSequences, sequenceLogps } from './dpo.js';
import type { TokenBatch } from './labels.js';

export interface OrpoSettings {
  /** TRL's ORPOConfig.beta, the paper's lambda: the odds-ratio term's weight (default 0.1). */
  beta: number;
}

export interface SimpoSettings {
  /** The reward scale (SimPO's beta; default 2.0, the paper's). */
  beta: number;
  /** The target reward margin (TRL's simpo_gamma; default 1.0: the paper's gamma / beta of 0.5). */
  gamma: number;
}

export const DEFAULT_ORPO_BETA = 0.1;
export const DEFAULT_SIMPO_BETA = 2.0;
export const DEFAULT_SIMPO_GAMMA = 1.0;

/** [2B] pair-ordered values as [B] chosen and [B] rejected. */
function sides(v: tf.Tensor1D): [tf.Tensor1D, tf.Tensor1D] {
  const B = v.shape[0] / 2;
  const [c, r] = tf.split(v.reshape([B, 2]), 2, 1) as [tf.Tensor2D, tf.Tensor2D];
  return [c.reshape([B]), r.reshape([B])];
}

/**
 * log(1 - exp(p)) for p < 0, as -expm1 keeps it accurate near 0. p is held
 * below -1e-12: a response whose every token has probability 1 in float32
 * would make it -inf (TRL's log1p(-exp(p)) too).
 */
const log1mExp = (p: tf.Tensor1D): tf.Tensor1D =>
  tf.log(tf.neg(tf.expm1(tf.minimum(p, -1e-12)))) as tf.Tensor1D;

/** ORPO's loss per pair, [B], from the length-averaged log-probabilities [2B]. */
export function orpoPairLosses(avgLogps: tf.Tensor1D, { beta }: OrpoSettings): tf.Tensor1D {
  return tf.tidy(() => {
    const [c, r] = sides(avgLogps); // [B] each
    const logOdds = tf.sub(tf.sub(c, r), tf.sub(log1mExp(c), log1mExp(r)));
    // -log sigmoid(z) = softplus(-z)
    return tf.add(tf.neg(c), tf.mul(tf.softplus(tf.neg(logOdds)), beta)) as tf.Tensor1D;
  });
}

/** SimPO's loss per pair, [B], from the length-averaged log-probabilities [2B]. */
export function simpoPairLosses(
  avgLogps: tf.Tensor1D,
  { beta, gamma }: SimpoSettings,
): tf.Tensor1D {
  return tf.tidy(() => {
    const [c, r] = sides(avgLogps);
    const z = tf.sub(tf.mul(tf.sub(c, r), beta), gamma);
    return tf.softplus(tf.neg(z)) as tf.Tensor1D;
  });
}

/** Each sequence's mean log-probability over its labelled tokens, [2B] for a pair batch. */
export function averageLogps(
  model: CausalLM,
  batch: TokenBatch,
  options: ForwardPassOptions = {},
): tf.Tensor1D {
  return sequenceLogps(model, pairSequences(batch), options, true);
}

/**
 * Rewards as TRL logs them, [B] chosen and [B] rejected, from [2B]
 * pair-ordered log-probabilities: beta times each (ORPO and SimPO: the mean
 * log-probabilities; DPO: their log-ratios to the reference).
 */
export function pairRewards(logps: tf.Tensor, beta: number): [tf.Tensor1D, tf.Tensor1D] {
  return tf.tidy(() => sides(tf.mul(logps, beta) as tf.Tensor1D));
}
