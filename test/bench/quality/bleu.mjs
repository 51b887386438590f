// @ts-check
// Corpus-level BLEU-4 as sacreBLEU 2.x computes it by default
// (`BLEU().corpus_score(hyps, refs)`): the 13a tokenizer of mteval-v13a,
// modified n-gram precisions clipped by the largest count in any one
// reference, the brevity penalty over the closest reference length of each
// sentence (ties: the shorter one), and the geometric mean of the four
// precisions, 0..100.
//
// Plain JavaScript with JSDoc types so that both the vitest suite (through
// bleu.d.mts) and the benchmark script, run by node from the built packages,
// import this one file. bleu.d.mts is generated from it (which also
// type-checks it):
//   npx tsc --allowJs --checkJs --strict --noUncheckedIndexedAccess --declaration \
//     --emitDeclarationOnly --target es2022 --lib es2023 --module nodenext \
//     --outDir /tmp/bleu-dts test/bench/quality/bleu.mjs
// then copied to test/bench/quality/bleu.d.mts under its first line and
// formatted with prettier.

/** BLEU-4: n-grams of 1 to 4 tokens. */
export const MAX_NGRAM_ORDER = 4;

/**
 * 'exp' (sacreBLEU's default, mteval-v13a's NIST smoothing): the k-th order
 * whose match count is 0 gets precision 1 / (2^k * total) instead of 0. It
 * only changes a score where some order has no match at all (short corpora,
 * single sentences). 'none': such a precision stays 0 and so does the score.
 * @typedef {'exp' | 'none'} BleuSmoothing
 */

/**
 * @typedef {object} BleuOptions
 * @property {BleuSmoothing} [smooth] Default 'exp', as sacreBLEU.
 * @property {boolean} [lowercase] Lowercase hypothesis and references before tokenizing (default false).
 * @property {boolean} [effectiveOrder] Average only the orders for which the hypotheses have
 *   n-grams (sacreBLEU's effective_order, meant for sentence BLEU; default false).
 */

/**
 * The sufficient statistics of one sentence, or of a corpus (their sum).
 * @typedef {object} BleuStatistics
 * @property {number} hypLen Hypothesis tokens.
 * @property {number} refLen Tokens of the reference closest in length.
 * @property {number[]} correct Clipped n-gram matches per order 1..4.
 * @property {number[]} total Hypothesis n-grams per order 1..4.
 */

/**
 * @typedef {object} BleuScore
 * @property {number} score 0..100.
 * @property {number[]} precisions Per order 1..4, in percent, after smoothing.
 * @property {number[]} counts Clipped matches per order.
 * @property {number[]} totals Hypothesis n-grams per order.
 * @property {number} bp Brevity penalty.
 * @property {number} ratio hypLen / refLen (0 when refLen is 0).
 * @property {number} hypLen
 * @property {number} refLen
 */

// Python's str.split() / rstrip() whitespace (str.isspace), which differs
// from JavaScript's \s: it has \x1c-\x1f and \x85, and not \ufeff.
const PY_SPACE =
  '\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_SPLIT = new RegExp(`[${PY_SPACE}]+`);
const PY_RSTRIP = new RegExp(`[${PY_SPACE}]+$`);

// sacrebleu/tokenizers/tokenizer_re.py, in order. The first class is Python's
// [\{-\~\[-\` -\&\(-\+\:-\@\/]: space and every ASCII symbol but ' , - .
const TOKENIZER_13A_RULES = /** @type {const} */ ([
  [/([\x7b-\x7e\x5b-\x60\x20-\x26\x28-\x2b\x3a-\x40/])/g, ' $1 '],
  // period and comma unless preceded by a digit
  [/([^0-9])([.,])/g, '$1 $2 '],
  // period and comma unless followed by a digit
  [/([.,])([^0-9])/g, ' $1 $2'],
  // dash when preceded by a digit
  [/([0-9])(-)/g, '$1 $2 '],
]);

/**
 * sacreBLEU's '13a' tokenizer (mteval-v13a): the tokens joined by single spaces.
 * @param {string} line
 * @returns {string}
 */
export function tokenize13a(line) {
  let s = line.replaceAll('<skipped>', '').replaceAll('-\n', '').replaceAll('\n', ' ');
  if (s.includes('&')) {
    s = s
      .replaceAll('&quot;', '"')
      .replaceAll('&amp;', '&')
      .replaceAll('&lt;', '<')
      .replaceAll('&gt;', '>');
  }
  s = ` ${s} `;
  for (const [pattern, replacement] of TOKENIZER_13A_RULES) s = s.replace(pattern, replacement);
  return splitTokens(s).join(' ');
}

/** @param {string} s */
function splitTokens(s) {
  return s.split(PY_SPLIT).filter((t) => t !== '');
}

/**
 * What sacreBLEU does to each segment: optional lowercasing, rstrip, 13a.
 * @param {string} segment
 * @param {BleuOptions} options
 */
function preprocess(segment, options) {
  const s = options.lowercase ? segment.toLowerCase() : segment;
  return splitTokens(tokenize13a(s.replace(PY_RSTRIP, '')));
}

/**
 * The n-grams of each order 1..MAX_NGRAM_ORDER with their counts; tokens hold
 * no whitespace, so a space-joined key is unambiguous.
 * @param {string[]} tokens
 * @returns {Map<string, number>[]}
 */
function ngramCounts(tokens) {
  return zeros().map((_, order) => {
    /** @type {Map<string, number>} */
    const counts = new Map();
    for (let i = 0; i + order + 1 <= tokens.length; i++) {
      const key = tokens.slice(i, i + order + 1).join(' ');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    return counts;
  });
}

/** One 0 per n-gram order. */
function zeros() {
  return Array.from({ length: MAX_NGRAM_ORDER }, () => 0);
}

/**
 * The statistics of one hypothesis against its references. Empty references
 * are dropped, as sacreBLEU does for a variable number of references; at
 * least one must remain.
 * @param {string} hypothesis
 * @param {readonly (string | null)[]} references
 * @param {BleuOptions} [options]
 * @returns {BleuStatistics}
 */
export function segmentStatistics(hypothesis, references, options = {}) {
  if (typeof hypothesis !== 'string')
    throw new TypeError(`BLEU: the hypothesis must be a string, got ${typeof hypothesis}`);
  const refs = references.filter((r) => typeof r === 'string' && r !== '').map(String);
  if (refs.length === 0)
    throw new Error(
      `BLEU: no non-empty reference for the hypothesis ${JSON.stringify(hypothesis)}`,
    );

  /** @type {Map<string, number>[]} the largest count of each n-gram in any one reference */
  const maxRefCounts = zeros().map(() => new Map());
  let refLen = -1;
  let closest = Infinity;
  const hyp = preprocess(hypothesis, options);
  for (const ref of refs) {
    const tokens = preprocess(ref, options);
    const diff = Math.abs(hyp.length - tokens.length);
    if (diff < closest || (diff === closest && tokens.length < refLen)) {
      closest = diff;
      refLen = tokens.length;
    }
    ngramCounts(tokens).forEach((counts, n) => {
      const max = /** @type {Map<string, number>} */ (maxRefCounts[n]);
      for (const [key, count] of counts) if (count > (max.get(key) ?? 0)) max.set(key, count);
    });
  }

  const hypCounts = ngramCounts(hyp);
  const total = hypCounts.map((counts) => [...counts.values()].reduce((a, b) => a + b, 0));
  const correct = hypCounts.map((counts, n) => {
    let matched = 0;
    for (const [key, count] of counts) matched += Math.min(count, maxRefCounts[n]?.get(key) ?? 0);
    return matched;
  });
  return { hypLen: hyp.length, refLen, correct, total };
}

// sacrebleu.utils.my_log: log(0) is this finite number, so exp(mean) is 0.
/** @param {number} x */
const myLog = (x) => (x > 0 ? Math.log(x) : -9999999999);

/**
 * The score of (summed) statistics: sacreBLEU's BLEU.compute_bleu.
 * @param {BleuStatistics} stats
 * @param {BleuOptions} [options]
 * @returns {BleuScore}
 */
export function bleuFromStatistics(stats, options = {}) {
  const smooth = options.smooth ?? 'exp';
  if (smooth !== 'exp' && smooth !== 'none')
    throw new Error(`BLEU: unknown smoothing ${JSON.stringify(smooth)}; use 'exp' or 'none'`);
  const { hypLen, refLen } = stats;
  const counts = [...stats.correct];
  const totals = [...stats.total];
  if (counts.length !== MAX_NGRAM_ORDER || totals.length !== MAX_NGRAM_ORDER)
    throw new Error(`BLEU: statistics need ${MAX_NGRAM_ORDER} orders of correct and total counts`);
  const bp = hypLen < refLen ? (hypLen > 0 ? Math.exp(1 - refLen / hypLen) : 0) : 1;
  const ratio = refLen > 0 ? hypLen / refLen : 0;
  const precisions = zeros();
  const result = { precisions, counts, totals, bp, ratio, hypLen, refLen };
  // No match of any order: 0 whatever the smoothing (sacreBLEU #141).
  if (!counts.some((c) => c > 0)) return { score: 0, ...result };

  let smoothMteval = 1;
  let order = MAX_NGRAM_ORDER;
  for (let n = 0; n < MAX_NGRAM_ORDER; n++) {
    const total = totals[n] ?? 0;
    const correct = counts[n] ?? 0;
    if (total === 0) break;
    if (options.effectiveOrder) order = n + 1;
    if (correct > 0) precisions[n] = (100 * correct) / total;
    else if (smooth === 'exp') {
      smoothMteval *= 2;
      precisions[n] = 100 / (smoothMteval * total);
    }
  }
  const meanLog = precisions.slice(0, order).reduce((s, p) => s + myLog(p), 0) / order;
  return { score: bp * Math.exp(meanLog), ...result };
}

/**
 * Corpus BLEU of hypotheses[i] against references[i] (one list of any
 * length per hypothesis: the transpose of sacreBLEU's reference streams).
 * Statistics are summed over the corpus before the score, as BLEU defines.
 * @param {readonly string[]} hypotheses
 * @param {readonly (readonly (string | null)[])[]} references
 * @param {BleuOptions} [options]
 * @returns {BleuScore}
 */
export function corpusBleu(hypotheses, references, options = {}) {
  if (hypotheses.length !== references.length)
    throw new Error(
      `BLEU: ${hypotheses.length} hypotheses but ${references.length} reference lists; give one list per hypothesis`,
    );
  /** @type {BleuStatistics} */
  const sum = { hypLen: 0, refLen: 0, correct: zeros(), total: zeros() };
  hypotheses.forEach((hypothesis, i) => {
    let s;
    try {
      s = segmentStatistics(hypothesis, references[i] ?? [], options);
    } catch (err) {
      const message = /** @type {Error} */ (err).message.replace(/^BLEU: /, '');
      throw new Error(`BLEU: sentence ${i}: ${message}`);
    }
    sum.hypLen += s.hypLen;
    sum.refLen += s.refLen;
    sum.correct = sum.correct.map((c, n) => c + (s.correct[n] ?? 0));
    sum.total = sum.total.map((t, n) => t + (s.total[n] ?? 0));
  });
  return bleuFromStatistics(sum, options);
}

/**
 * sacreBLEU's one-line summary, e.g.
 * `BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)`.
 * @param {BleuScore} s
 * @returns {string}
 */
export function formatBleu(s) {
  const precisions = s.precisions.map((p) => p.toFixed(1)).join('/');
  return (
    `BLEU = ${s.score.toFixed(2)} ${precisions} (BP = ${s.bp.toFixed(3)} ratio = ${s.ratio.toFixed(3)} ` +
    `hyp_len = ${s.hypLen} ref_len = ${s.refLen})`
  );
}
