// Generated from bleu.mjs (see the command at its top); edit bleu.mjs, not this file.
/**
 * sacreBLEU's '13a' tokenizer (mteval-v13a): the tokens joined by single spaces.
 * @param {string} line
 * @returns {string}
 */
export function tokenize13a(line: string): string;
/**
 * The statistics of one hypothesis against its references. Empty references
 * are dropped, as sacreBLEU does for a variable number of references; at
 * least one must remain.
 * @param {string} hypothesis
 * @param {readonly (string | null)[]} references
 * @param {BleuOptions} [options]
 * @returns {BleuStatistics}
 */
export function segmentStatistics(
  hypothesis: string,
  references: readonly (string | null)[],
  options?: BleuOptions,
): BleuStatistics;
/**
 * The score of (summed) statistics: sacreBLEU's BLEU.compute_bleu.
 * @param {BleuStatistics} stats
 * @param {BleuOptions} [options]
 * @returns {BleuScore}
 */
export function bleuFromStatistics(stats: BleuStatistics, options?: BleuOptions): BleuScore;
/**
 * Corpus BLEU of hypotheses[i] against references[i] (one list of any
 * length per hypothesis: the transpose of sacreBLEU's reference streams).
 * Statistics are summed over the corpus before the score, as BLEU defines.
 * @param {readonly string[]} hypotheses
 * @param {readonly (readonly (string | null)[])[]} references
 * @param {BleuOptions} [options]
 * @returns {BleuScore}
 */
export function corpusBleu(
  hypotheses: readonly string[],
  references: readonly (readonly (string | null)[])[],
  options?: BleuOptions,
): BleuScore;
/**
 * sacreBLEU's one-line summary, e.g.
 * `BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)`.
 * @param {BleuScore} s
 * @returns {string}
 */
export function formatBleu(s: BleuScore): string;
/** BLEU-4: n-grams of 1 to 4 tokens. */
export const MAX_NGRAM_ORDER: 4;
/**
 * 'exp' (sacreBLEU's default, mteval-v13a's NIST smoothing): the k-th order
 * whose match count is 0 gets precision 1 / (2^k * total) instead of 0. It
 * only changes a score where some order has no match at all (short corpora,
 * single sentences). 'none': such a precision stays 0 and so does the score.
 */
export type BleuSmoothing = 'exp' | 'none';
export type BleuOptions = {
  /**
   * Default 'exp', as sacreBLEU.
   */
  smooth?: BleuSmoothing | undefined;
  /**
   * Lowercase hypothesis and references before tokenizing (default false).
   */
  lowercase?: boolean | undefined;
  /**
   * Average only the orders for which the hypotheses have
   * n-grams (sacreBLEU's effective_order, meant for sentence BLEU; default false).
   */
  effectiveOrder?: boolean | undefined;
};
/**
 * The sufficient statistics of one sentence, or of a corpus (their sum).
 */
export type BleuStatistics = {
  /**
   * Hypothesis tokens.
   */
  hypLen: number;
  /**
   * Tokens of the reference closest in length.
   */
  refLen: number;
  /**
   * Clipped n-gram matches per order 1..4.
   */
  correct: number[];
  /**
   * Hypothesis n-grams per order 1..4.
   */
  total: number[];
};
export type BleuScore = {
  /**
   * 0..100.
   */
  score: number;
  /**
   * Per order 1..4, in percent, after smoothing.
   */
  precisions: number[];
  /**
   * Clipped matches per order.
   */
  counts: number[];
  /**
   * Hypothesis n-grams per order.
   */
  totals: number[];
  /**
   * Brevity penalty.
   */
  bp: number;
  /**
   * hypLen / refLen (0 when refLen is 0).
   */
  ratio: number;
  hypLen: number;
  refLen: number;
};
