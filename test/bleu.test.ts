// BLEU (test/bench/quality/bleu.mjs) against published figures: sacreBLEU's
// README and test suite (the conventions we copy), NLTK's doctests of the
// BLEU paper's examples (pre-tokenized, no punctuation, so 13a changes
// nothing and NLTK's closest-length brevity penalty is ours), and properties.
import { describe, expect, it } from 'vitest';
import { Rng } from '@lorafleet/core';
import {
  bleuFromStatistics,
  corpusBleu,
  formatBleu,
  segmentStatistics,
  tokenize13a,
} from './bench/quality/bleu.mjs';

/** sacreBLEU takes reference streams (one list per reference set); we take one list per hypothesis. */
function perHypothesis(streams: (string | null)[][], n: number): (string | null)[][] {
  return Array.from({ length: n }, (_, i) => streams.map((stream) => stream[i] ?? null));
}

describe('BLEU against sacreBLEU (mjpost/sacrebleu README.md and test/)', () => {
  const sys = ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.'];
  const refs = [
    ['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.'],
    ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.'],
  ];

  it('reproduces the README example line', () => {
    const score = corpusBleu(sys, perHypothesis(refs, 3));
    expect(formatBleu(score)).toBe(
      'BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)',
    );
    // test_bleu.py: 48.530827 within 1e-8, with smooth_method 'exp' (default) and 'none'.
    expect(Math.abs(score.score - 48.530827)).toBeLessThan(1e-8);
    const none = corpusBleu(sys, perHypothesis(refs, 3), { smooth: 'none' });
    expect(Math.abs(none.score - 48.530827)).toBeLessThan(1e-8);
  });

  it("reproduces the README's variable number of references (an empty one is dropped)", () => {
    const variable = [['', ...refs[0]!.slice(1)], refs[1]!];
    expect(formatBleu(corpusBleu(sys, perHypothesis(variable, 3)))).toBe(
      'BLEU = 29.44 82.4/42.9/27.3/12.5 (BP = 0.889 ratio = 0.895 hyp_len = 17 ref_len = 19)',
    );
  });

  it('keeps empty hypotheses (test_bleu.py: score 0)', () => {
    const score = corpusBleu(['', '', ''], perHypothesis(refs, 3));
    expect(score.score).toBe(0);
    expect(score.hypLen).toBe(0);
  });

  it("counts test_bleu.py's statistics case", () => {
    const s = segmentStatistics('am I am a character sequence', [
      'I am a symbol string sequence a a',
    ]);
    expect(s).toEqual({ hypLen: 6, refLen: 8, correct: [4, 2, 1, 0], total: [6, 5, 4, 3] });
  });

  it("scores test_bleu.py's statistics (9,7,5,3 of 10,8,6,4; lengths 11, 11)", () => {
    const score = bleuFromStatistics(
      { hypLen: 11, refLen: 11, correct: [9, 7, 5, 3], total: [10, 8, 6, 4] },
      { smooth: 'none' },
    );
    expect(Math.abs(score.score / 100 - 0.8375922397)).toBeLessThan(1e-8);
  });

  // test_sentence_bleu.py (sacreBLEU issue #98), effective_order=True, tolerance 1e-3.
  const REF = 'producţia de zahăr brut se exprimă în zahăr alb;';
  const SYS = 'Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;';

  it("smooths a zero 4-gram precision with 'exp' (8.493) and not with 'none' (0)", () => {
    const exp = corpusBleu([SYS], [[REF]], { effectiveOrder: true });
    expect(Math.abs(exp.score - 8.493)).toBeLessThan(1e-3);
    expect(exp.counts[3]).toBe(0);
    expect(corpusBleu([SYS], [[REF]], { effectiveOrder: true, smooth: 'none' }).score).toBe(0);
  });

  it('gives 0 when nothing matches, whatever the smoothing (sacreBLEU issue #141)', () => {
    for (const smooth of ['exp', 'none'] as const) {
      expect(
        corpusBleu(['this is a cat'], [['okay thanks']], { smooth, effectiveOrder: true }).score,
      ).toBe(0);
    }
  });
});

describe("BLEU against the BLEU paper's examples (Papineni et al. 2002, via NLTK's doctests)", () => {
  const hyp1 =
    'It is a guide to action which ensures that the military always obeys the commands of the party';
  const hyp2 =
    'It is to insure the troops forever hearing the activity guidebook that party direct';
  const ref1a =
    'It is a guide to action that ensures that the military will forever heed Party commands';
  const ref1b =
    'It is the guiding principle which guarantees the military forces always being under the command of the Party';
  const ref1c = 'It is the practical guide for the army always to heed the directions of the party';
  const hyp2b = 'he read the book because he was interested in world history';
  const ref2a = 'he was interested in world history because he read the book';

  it("clips 'the the the the the the the' to 2/7 (section 2.1; case-insensitive as in the paper)", () => {
    const refs = ['The cat is on the mat.', 'There is a cat on the mat.'];
    const lower = segmentStatistics('the the the the the the the', refs, { lowercase: true });
    expect([lower.correct[0], lower.total[0]]).toEqual([2, 7]);
    // Case-sensitive (sacreBLEU's default), "The" is another word: 1/7.
    expect(segmentStatistics('the the the the the the the', refs).correct[0]).toBe(1);
  });

  it('gives the modified precisions of Candidates 1 and 2 (17/18, 10/17; 8/14, 1/13)', () => {
    const c1 = segmentStatistics(hyp1, [ref1a, ref1b, ref1c]);
    const c2 = segmentStatistics(hyp2, [ref1a, ref1b, ref1c]);
    expect([c1.correct[0], c1.total[0], c1.correct[1], c1.total[1]]).toEqual([17, 18, 10, 17]);
    expect([c2.correct[0], c2.total[0], c2.correct[1], c2.total[1]]).toEqual([8, 14, 1, 13]);
  });

  it("matches NLTK's corpus_bleu (0.5920778868801042) and sentence_bleu (0.5045...)", () => {
    const corpus = corpusBleu([hyp1, hyp2b], [[ref1a, ref1b, ref1c], [ref2a]]);
    expect(corpus.score).toBeCloseTo(59.20778868801042, 10);
    const sentence = corpusBleu([hyp1], [[ref1a, ref1b, ref1c]]);
    expect(Math.floor(sentence.score * 100) / 10_000).toBe(0.5045);
  });

  it('takes the closest reference length, the shorter on a tie (NLTK brevity_penalty doctests)', () => {
    const a = (n: number) => Array.from({ length: n }, () => 'a').join(' ');
    expect(corpusBleu([a(12)], [[a(12), a(15), a(17)]]).bp).toBe(1);
    expect(corpusBleu([a(12)], [[a(28), a(28)]]).bp).toBeCloseTo(0.2635971381157267, 15);
    expect(corpusBleu([a(12)], [[a(13), a(2)]]).bp).toBeCloseTo(0.9200444146293233, 15);
    const tie = corpusBleu([a(12)], [[a(13), a(11)]]);
    expect([tie.refLen, tie.bp]).toEqual([11, 1]);
  });
});

describe('the 13a tokenizer (sacrebleu/tokenizers/tokenizer_13a.py rules)', () => {
  it('splits punctuation and symbols off words, but not apostrophes or hyphens in words', () => {
    expect(tokenize13a('The dog bit the man.')).toBe('The dog bit the man .');
    expect(tokenize13a("It wasn't family-friendly (or cheap)!")).toBe(
      "It wasn't family-friendly ( or cheap ) !",
    );
  });

  it('keeps periods and commas between digits and splits a dash after a digit', () => {
    expect(tokenize13a('It costs 3.50, or 1,000 for 2-3 people.')).toBe(
      'It costs 3.50 , or 1,000 for 2 - 3 people .',
    );
  });

  it('unescapes &quot; &amp; &lt; &gt;, drops <skipped> and joins lines', () => {
    expect(tokenize13a('&quot;A&amp;B&quot; &lt;x&gt; <skipped>end-\nof\nline')).toBe(
      '" A & B " < x > endof line',
    );
  });

  it("splits on Python's whitespace (str.split), not only JavaScript's", () => {
    expect(tokenize13a('a\x1fb\u00a0c\u3000d')).toBe('a b c d');
  });
});

describe('BLEU properties', () => {
  // Core's seeded generator, for random sentences.
  function rng(seed: number): () => number {
    const r = new Rng(seed);
    return () => r.uniform();
  }
  const words = ['the', 'cat', 'sat', 'on', 'mat', 'a', 'dog', 'ran', 'far', 'away', '.', ','];
  function sentence(next: () => number, minLength: number): string {
    const n = minLength + Math.floor(next() * 12);
    return Array.from({ length: n }, () => words[Math.floor(next() * words.length)]!).join(' ');
  }

  it('scores 100 when every hypothesis equals one of its references', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const next = rng(seed);
      const hyps = Array.from({ length: 1 + (seed % 5) }, () => sentence(next, 4));
      const refs = hyps.map((h) => [sentence(next, 1), h, sentence(next, 1)]);
      for (const smooth of ['exp', 'none'] as const) {
        const score = corpusBleu(hyps, refs, { smooth });
        expect(score.score).toBeCloseTo(100, 10);
        expect(score.bp).toBe(1);
        expect(score.precisions).toEqual([100, 100, 100, 100]);
      }
    }
  });

  it('scores 0 without any shared token (and without smoothing, without a shared 4-gram)', () => {
    expect(corpusBleu(['alpha beta gamma delta'], [['one two three four five']]).score).toBe(0);
    const noFourGram = corpusBleu(['the cat sat on'], [['the cat sat in']], { smooth: 'none' });
    expect(noFourGram.counts).toEqual([3, 2, 1, 0]);
    expect(noFourGram.score).toBe(0);
    expect(corpusBleu(['the cat sat on'], [['the cat sat in']]).score).toBeGreaterThan(0);
  });

  it('is the score of the summed sentence statistics, stays in [0, 100], ignores reference order', () => {
    for (let seed = 100; seed < 120; seed++) {
      const next = rng(seed);
      const hyps = Array.from({ length: 6 }, () => sentence(next, 0));
      const refs = hyps.map(() => [sentence(next, 1), sentence(next, 1), sentence(next, 1)]);
      const score = corpusBleu(hyps, refs);
      const stats = hyps.map((h, i) => segmentStatistics(h, refs[i]!));
      const summed = bleuFromStatistics({
        hypLen: stats.reduce((n, s) => n + s.hypLen, 0),
        refLen: stats.reduce((n, s) => n + s.refLen, 0),
        correct: [0, 1, 2, 3].map((k) => stats.reduce((n, s) => n + s.correct[k]!, 0)),
        total: [0, 1, 2, 3].map((k) => stats.reduce((n, s) => n + s.total[k]!, 0)),
      });
      expect(score).toEqual(summed);
      expect(score.score).toBeGreaterThanOrEqual(0);
      expect(score.score).toBeLessThanOrEqual(100);
      expect(
        corpusBleu(
          hyps,
          refs.map((r) => [...r].reverse()),
        ),
      ).toEqual(score);
    }
  });

  it('says which sentence is wrong', () => {
    expect(() => corpusBleu(['a', 'b'], [['a']])).toThrow(/2 hypotheses but 1 reference lists/);
    expect(() => corpusBleu(['a', 'b'], [['a'], ['', null]])).toThrow(
      /sentence 1: .*no non-empty reference/,
    );
  });
});
