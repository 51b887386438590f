// The preference objectives' one scoring path: a pair batch's loss per pair
// and the rewards TRL logs for its chosen and rejected responses, from one
// policy pass (and DPO's reference pass, taken first and off the tape).
// Training (objective.ts) differentiates the summed losses and keeps the
// reward sums; evaluation (pair-evaluation.ts) reads both.
import { tf } from '@lorafleet/core';
import type { CausalLM, ForwardPassOptions } from './causal-lm.js';
import { type DpoSettings, dpoPairLosses } from './dpo.js';
import {
  labelledTokenCounts,
  ldWeights,
  pairSequences,
  referenceLogps,
  sides,
  weightedLogps,
} from './pair-logps.js';
import type { TokenBatch } from './labels.js';
import {
  type CpoSettings,
  type OrpoSettings,
  type SimpoSettings,
  alphaPoRewards,
  averageLogps,
  cpoCompares,
  cpoPairLosses,
  orpoLogps,
  orpoLogOdds,
  orpoPairLosses,
  pairLogps,
  pairRewards,
  simpoPairLosses,
} from './reference-free.js';

/** The objectives trained on preference pairs, with their settings. */
export type PreferenceSettings =
  | ({ kind: 'dpo' } & DpoSettings)
  | ({ kind: 'orpo' } & OrpoSettings)
  | ({ kind: 'simpo' } & SimpoSettings)
  | ({ kind: 'cpo' } & CpoSettings);

export type PreferenceKind = PreferenceSettings['kind'];

/** Each preference objective's name as its paper writes it, for logs. */
export const PREFERENCE_NAMES: { readonly [K in PreferenceKind]: string } = {
  dpo: 'DPO',
  orpo: 'ORPO',
  simpo: 'SimPO',
  cpo: 'CPO',
};

/** A batch's loss per pair and the rewards of its chosen and rejected responses, [B] each. */
export interface PairScores {
  losses: tf.Tensor1D;
  chosen: tf.Tensor1D;
  rejected: tf.Tensor1D;
  /** The policy's log-probabilities the loss compares (sums, or means), [2B] pair-ordered. */
  logps: tf.Tensor1D;
  /**
   * DPO: each response's RESPONSE_COLUMNS sums [2B, 3] (TRL's token metrics)
   * and its labelled tokens [2B], pair-ordered; absent for the others.
   */
  responses?: { metrics: tf.Tensor2D; tokens: Float32Array };
  /**
   * The NLL term of the loss before its weight, [B]: ORPO's over each chosen
   * prompt and response, SimPO's and CPO's over each chosen response (where
   * their alpha puts it in the loss); TRL's nll_loss. Absent otherwise.
   */
  nll?: tf.Tensor1D;
  /** ORPO's log odds ratio of each pair, [B] (orpoLogOdds). */
  logOdds?: tf.Tensor1D;
}

/** A pair batch ready to score: what must stay off the tape (DPO's reference pass) is done. */
export interface PreparedPairs {
  /** The policy pass under `options` (run it under a tape to train). */
  scores(options: ForwardPassOptions): PairScores;
  dispose(): void;
}

const PREPARE: {
  [K in PreferenceKind]: (
    model: CausalLM,
    batch: TokenBatch,
    s: Extract<PreferenceSettings, { kind: K }>,
  ) => PreparedPairs;
} = {
  // TRL's DPO rewards and logps logs: beta (logp - ref) and logp on the summed
  // log-probabilities (LD-DPO-weighted with ld_alpha), also where the loss
  // compares their means (IPO, sigmoid_norm)
  dpo: (model, batch, settings: DpoSettings) => {
    const seqs = pairSequences(batch);
    const V = model.modelConfig.vocabSize;
    const weights = settings.ldAlpha === undefined ? null : ldWeights(seqs, V, settings.ldAlpha);
    const ref = referenceLogps(model, batch, weights); // [2B] sums, adapters off, untaped
    const counts = labelledTokenCounts(seqs, V);
    return {
      scores: (options) =>
        tf.tidy(() => {
          const extras = { wpo: settings.useWeighting === true, responseMetrics: true };
          const { sums: logps, plain, ...w } = weightedLogps(model, seqs, options, weights, extras); // [2B]
          const [chosen, rejected] = pairRewards(tf.sub(logps, ref), settings.beta);
          const unweighted = dpoPairLosses({ logps, ref, plain, counts }, settings); // [B]
          // WPO: each pair's loss times its responses' weights, which carry no gradient.
          const losses = w.wpo ? tf.mul(unweighted, tf.mul(...sides(w.wpo))) : unweighted;
          const responses = { metrics: w.metrics!, tokens: counts };
          return { losses: losses as tf.Tensor1D, chosen, rejected, logps, responses };
        }),
      dispose: () => ref.dispose(),
    };
  },
  // TRL's ORPO rewards: beta times the responses' mean log-probabilities
  orpo: (model, batch, settings) => ({
    scores: (options) =>
      tf.tidy(() => {
        const { means: logps, chosenNll: nll } = orpoLogps(model, batch, options); // [2B], [B]
        const [chosen, rejected] = pairRewards(logps, settings.beta);
        const losses = orpoPairLosses(logps, nll, settings);
        return { losses, chosen, rejected, logps, nll, logOdds: orpoLogOdds(logps) };
      }),
    dispose: () => {},
  }),
  // TRL's SimPO rewards: beta times the mean log-probabilities (AlphaPO-shaped with its alpha)
  simpo: (model, batch, settings) => ({
    scores: (options) =>
      tf.tidy(() => {
        const logps = averageLogps(model, batch, options); // [2B]
        const [chosen, rejected] = pairRewards(
          alphaPoRewards(logps, settings.alphaPo),
          settings.beta,
        );
        const losses = simpoPairLosses(logps, settings);
        return { losses, chosen, rejected, logps, ...chosenNll(logps, settings.alpha) };
      }),
    dispose: () => {},
  }),
  // TRL's CPO rewards: beta times the log-probabilities its loss compares (summed; IPO's means)
  cpo: (model, batch, settings) => ({
    scores: (options) =>
      tf.tidy(() => {
        const both = pairLogps(model, batch, options); // [2B] sums and means
        const logps = cpoCompares(both, settings.loss);
        const rewards = alphaPoRewards(logps, settings.alphaPo);
        const [chosen, rejected] = pairRewards(rewards, settings.beta);
        const losses = cpoPairLosses(both, settings);
        return { losses, chosen, rejected, logps, ...chosenNll(both.means, settings.alpha) };
      }),
    dispose: () => {},
  }),
};

/** SimPO's and CPO's NLL term, -c per pair from the mean log-probabilities [2B], where alpha weighs it in. */
function chosenNll(means: tf.Tensor1D, alpha = 0): { nll?: tf.Tensor1D } {
  return alpha === 0 ? {} : { nll: tf.neg(sides(means)[0]) as tf.Tensor1D };
}

export function preparePairs(
  model: CausalLM,
  batch: TokenBatch,
  settings: PreferenceSettings,
): PreparedPairs {
  const prepare = PREPARE[settings.kind] as (
    m: CausalLM,
    b: TokenBatch,
    s: PreferenceSettings,
  ) => PreparedPairs;
  return prepare(model, batch, settings);
}

/** What pairStats holds, in order: TRL's logs as sums that workers add. */
export const PAIR_STATS = [
  'correct',
  'chosenSum',
  'rejectedSum',
  'chosenLogpSum',
  'rejectedLogpSum',
  'chosenTokens',
  'rejectedTokens',
  'chosenCorrectTokens',
  'entropySum',
  'chosenLogitSum',
  'rejectedLogitSum',
  'nllPairs',
  'nllSum',
  'oddsPairs',
  'logOddsRatioSum',
  'logOddsChosenSum',
] as const;

/**
 * Sums over pairs: those whose chosen reward exceeds the rejected one's, the
 * summed rewards of the chosen and of the rejected responses, and the summed
 * policy log-probabilities the loss compares (TRL's logps/chosen, logps/rejected).
 * DPO's token metrics (0 for the others), over the responses' labelled
 * tokens: how many each side has, the chosen ones the argmax predicts
 * (mean_token_accuracy), the entropy over both sides (entropy), and each
 * side's summed mean-over-vocabulary logits (logits/chosen, logits/rejected).
 * The NLL term (ORPO; SimPO and CPO with an alpha): the pairs that have one
 * and its sum (nll_loss); ORPO's pairs and their summed log sigmoid of the
 * log odds ratio (log_odds_ratio) and log odds ratio (log_odds_chosen).
 */
export type PairStatSums = { [K in (typeof PAIR_STATS)[number]]: number };

/** pairStats' values by name; zeros where `stats` holds none (the token loss). */
export function pairStatSums(stats: ArrayLike<number>): PairStatSums {
  const values = Array.from(stats);
  return Object.fromEntries(PAIR_STATS.map((k, i) => [k, values[i] ?? 0])) as PairStatSums;
}

/** [16] (PAIR_STATS) of a batch's scores. */
export function pairStats(scores: PairScores): tf.Tensor1D {
  const { chosen, rejected, logps, responses } = scores;
  return tf.tidy(() => {
    const B = chosen.shape[0];
    const [c, r] = tf.split(logps.reshape([B, 2]), 2, 1); // [B, 1] each
    const rewards = [
      tf.sum(tf.cast(tf.greater(chosen, rejected), 'float32')),
      tf.sum(chosen),
      tf.sum(rejected),
      tf.sum(c!),
      tf.sum(r!),
    ];
    return tf.concat([tf.stack(rewards), responseStats(responses, B), nllStats(scores)]);
  }) as tf.Tensor1D;
}

/** [5]: PAIR_STATS' NLL and log-odds sums (zeros where the objective has none). */
function nllStats({ nll, logOdds }: PairScores): tf.Tensor1D {
  const count = (x?: tf.Tensor1D) => tf.scalar(x ? x.shape[0] : 0);
  const total = (x?: tf.Tensor) => (x ? tf.sum(x) : tf.scalar(0));
  return tf.stack([
    count(nll),
    total(nll),
    count(logOdds),
    total(logOdds && tf.logSigmoid(logOdds)),
    total(logOdds),
  ]) as tf.Tensor1D;
}

/** [6]: PAIR_STATS' token metrics of the responses (zeros without them). */
function responseStats(responses: PairScores['responses'], B: number): tf.Tensor1D {
  if (!responses) return tf.zeros([6]);
  const [chosenTokens, rejectedTokens] = [0, 1].map((side) =>
    responses.tokens.reduce((n, count, s) => (s % 2 === side ? n + count : n), 0),
  );
  const bySide = responses.metrics.reshape([B, 2, 3]).sum(0); // [2, 3]: chosen, rejected
  const [correct, entropy, logit] = tf.unstack(bySide, 1); // [2] each
  return tf.concat([
    tf.tensor1d([chosenTokens!, rejectedTokens!]),
    correct!.slice(0, 1),
    entropy!.sum().reshape([1]),
    logit!,
  ]) as tf.Tensor1D;
}
