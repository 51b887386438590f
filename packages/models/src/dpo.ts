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
import { sides } from './pair-logps.js';

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
  | 'sft'
  | 'aot'
  | 'aot_unpaired';
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
  'aot',
  'aot_unpaired',
];

/** The loss types that read label_smoothing (TRL's sigmoid, robust, exo_pair, aot and aot_unpaired). */
export const SMOOTHED_LOSS_TYPES: readonly DpoLossType[] = [
  'sigmoid',
  'robust',
  'exo_pair',
  'aot',
  'aot_unpaired',
];

/**
 * The loss types whose pair losses depend on the other pairs of their
 * micro-batch (AOT sorts them): TRL refuses them with use_weighting, whose
 * weights are per pair.
 */
export const BATCH_SORTED_LOSS_TYPES: readonly DpoLossType[] = ['aot', 'aot_unpaired'];

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
 * response's labelled tokens (IPO, sigmoid_norm); the chosen response's
 * mean token NLL (sft); and the policy's and the reference's chosen -
 * rejected margins (aot).
 */
type PairTerms = {
  c: tf.Tensor1D;
  r: tf.Tensor1D;
  h: tf.Tensor1D;
  hMean: tf.Tensor1D;
  chosenNll: tf.Tensor1D;
  policyMargin: tf.Tensor1D;
  refMargin: tf.Tensor1D;
};

/**
 * x [n] sorted, largest first, its gradient routed back to where each value
 * came from (torch.sort's). The order itself carries no gradient.
 */
export function sortedDescending(x: tf.Tensor1D): tf.Tensor1D {
  const sort = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, save] = args as [tf.Tensor1D, tf.GradSaveFunc];
    const n = input.shape[0];
    const { values, indices } = tf.topk(input, n); // indices[i]: where the i-th largest was
    save([indices]);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const from = saved[0]!;
      // dy of sorted position i goes to position indices[i]: gather by the inverse permutation
      const inverse = tf.topk(tf.neg(tf.cast(from, 'float32')), n).indices;
      return [tf.gather(dy, inverse)];
    };
    return { value: values, gradFunc };
  });
  return sort(x) as tf.Tensor1D;
}

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
  // AOT (Melnyk et al. 2024, arXiv 2406.05882): the smoothed sigmoid loss of beta times the
  // micro-batch's policy margins sorted minus its reference margins sorted (the sum over the
  // micro-batch is the same for either sort order); unpaired: its chosen log-ratios sorted
  // minus its rejected ones sorted
  aot: ({ policyMargin, refMargin }, { beta, labelSmoothing }) =>
    smoothedSigmoid(
      tf.mul(tf.sub(sortedDescending(policyMargin), sortedDescending(refMargin)), beta),
      labelSmoothing,
    ),
  aot_unpaired: ({ c, r }, { beta, labelSmoothing }) =>
    smoothedSigmoid(tf.mul(tf.sub(sortedDescending(c), sortedDescending(r)), beta), labelSmoothing),
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
    const margin = (v: tf.Tensor1D) => tf.sub(...sides(v)) as tf.Tensor1D;
    const terms: PairTerms = {
      c,
      r,
      h: tf.sub(sc, sr) as tf.Tensor1D,
      hMean: tf.sub(tf.div(sc, nc), tf.div(sr, nr)) as tf.Tensor1D,
      chosenNll: tf.neg(tf.div(sides(plain)[0], nc)) as tf.Tensor1D,
      policyMargin: margin(logps),
      refMargin: margin(ref),
    };
    const parts = dpoLossTerms(settings).map(({ type, weight }) =>
      tf.mul(PAIR_LOSSES[type](terms, settings), weight),
    );
    return (parts.length === 1 ? parts[0]! : tf.addN(parts)) as tf.Tensor1D;
  });
}
