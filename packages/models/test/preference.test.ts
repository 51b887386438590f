// A preference step's reward statistics (preference.ts through objective.ts),
// for DPO, ORPO, SimPO and CPO:
// the pairs whose chosen reward is higher and the summed chosen and rejected
// rewards, kept off the tape while the loss is differentiated and summed on
// the device across micro-batches beside the gradient. They are what
// evaluation reports for the same pairs (no dropout is drawn in training),
// and TRL's rewards computed in float64 from the logits; with DPO, also
// DPOTrainer's token metrics of the responses (argmax hits, entropy, mean
// logits), which the other objectives leave at zero; with ORPO, SimPO and
// CPO, their NLL term and ORPO's log odds (ORPOTrainer's and CPOTrainer's logs).
import { GradientAccumulator, tf, useBackend } from '@lorafleet/core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type PairStatSums,
  type PreferenceSettings,
  PAIR_STATS,
  type TokenBatch,
  buildModel,
  evaluatePairs,
  modelConfigFromJson,
  objectiveOf,
  pairSequences,
  randomModelWeights,
  pairStatSums,
  withAdaptersOff,
  IGNORE_INDEX,
} from '../src/index.js';
import {
  BETA,
  GPT2,
  logitsOf,
  logpsFloat64,
  pairBatch,
  withLora,
  withPredictedTokens,
} from './pair-fixtures.js';

beforeAll(async () => {
  await useBackend('cpu');
});

const SETTINGS: PreferenceSettings[] = [
  { kind: 'dpo', beta: BETA },
  { kind: 'dpo', beta: BETA, loss: 'ipo' },
  { kind: 'orpo', beta: BETA },
  { kind: 'simpo', beta: 2, gamma: 0.7 },
  { kind: 'cpo', beta: 0.05, alpha: 1 },
];

/**
 * Whether a setting's rewards are on length-averaged log-probabilities: ORPO's,
 * SimPO's and CPO's IPO; DPO's are on the sums for every loss type (TRL 1.x:
 * also IPO's, whose loss compares the means; preference-trl.test.ts).
 */
const averaged = (s: PreferenceSettings) =>
  s.kind === 'dpo' ? false : s.kind === 'cpo' ? s.loss === 'ipo' : true;

/**
 * TRL's rewards and logps in float64: rewards beta (logp - ref) for DPO,
 * beta x logp for the others; logp summed, or the mean (`averaged`).
 */
async function rewardsFloat64(
  model: ReturnType<typeof buildModel>,
  batch: TokenBatch,
  s: PreferenceSettings,
): Promise<PairStatSums> {
  const seqs = pairSequences(batch);
  const logits = await logitsOf(model, seqs);
  const sequences = logpsFloat64(logits, seqs);
  const logps = async () =>
    logpsFloat64(await logitsOf(model, seqs), seqs).map(({ sum, tokens }) =>
      averaged(s) ? sum / tokens : sum,
    );
  const policy = sequences.map(({ sum, tokens }) => (averaged(s) ? sum / tokens : sum));
  // logitsOf runs the forward pass before its first await: within withAdaptersOff
  const ref = s.kind === 'dpo' ? await withAdaptersOff(model, logps) : policy.map(() => 0);
  const out = pairStatSums([]);
  for (let b = 0; b < batch.batchSize; b++) {
    const c = s.beta * (policy[2 * b]! - ref[2 * b]!);
    const r = s.beta * (policy[2 * b + 1]! - ref[2 * b + 1]!);
    out.correct += c > r ? 1 : 0;
    out.chosenSum += c;
    out.rejectedSum += r;
    out.chosenLogpSum += policy[2 * b]!;
    out.rejectedLogpSum += policy[2 * b + 1]!;
  }
  if (s.kind !== 'dpo')
    return nllFloat64(out, s, sequences, logpsFloat64(logits, withPrompts(seqs)));
  const [chosen, rejected] = [0, 1].map((side) => sequences.filter((_, i) => i % 2 === side));
  const total = (of: typeof sequences, k: keyof (typeof sequences)[number]) =>
    of.reduce((a, x) => a + x[k], 0);
  out.chosenTokens = total(chosen!, 'tokens');
  out.rejectedTokens = total(rejected!, 'tokens');
  out.chosenCorrectTokens = total(chosen!, 'correct');
  out.entropySum = total(sequences, 'entropy');
  out.chosenLogitSum = total(chosen!, 'logitSum');
  out.rejectedLogitSum = total(rejected!, 'logitSum');
  return out;
}

/** Pair-ordered sequences with each chosen one's prompt labelled too, from its second token (ORPO's NLL). */
function withPrompts(seqs: TokenBatch): TokenBatch {
  const labels = Int32Array.from(seqs.labels);
  for (let s = 0; s < seqs.batchSize; s += 2) {
    const row = labels.subarray(s * seqs.seqLen, (s + 1) * seqs.seqLen);
    const first = row.findIndex((l) => l !== IGNORE_INDEX);
    for (let t = 1; t < first; t++) row[t] = seqs.ids[s * seqs.seqLen + t]!;
  }
  return { ...seqs, labels };
}

/**
 * TRL's nll_loss, log_odds_ratio and log_odds_chosen of ORPO (and CPO's
 * nll_loss where its alpha puts the NLL in the loss) as sums, in float64:
 * ORPO's NLL over each chosen prompt and response (`whole`), CPO's over
 * each chosen response, ORPO's log odds from the responses' mean
 * log-probabilities.
 */
function nllFloat64(
  out: PairStatSums,
  s: PreferenceSettings,
  responses: { sum: number; tokens: number }[],
  whole: { sum: number; tokens: number }[],
): PairStatSums {
  const B = responses.length / 2;
  const mean = (x: { sum: number; tokens: number }) => x.sum / x.tokens;
  const alpha = s.kind === 'orpo' || s.kind === 'dpo' ? 0 : (s.alpha ?? 0);
  if (s.kind === 'orpo' || alpha !== 0) out.nllPairs = B;
  if (s.kind !== 'orpo') {
    if (alpha !== 0) for (let b = 0; b < B; b++) out.nllSum -= mean(responses[2 * b]!);
    return out;
  }
  out.oddsPairs = B;
  const logOdds = (p: number) => p - Math.log(-Math.expm1(p));
  for (let b = 0; b < B; b++) {
    out.nllSum -= mean(whole[2 * b]!);
    const z = logOdds(mean(responses[2 * b]!)) - logOdds(mean(responses[2 * b + 1]!));
    out.logOddsChosenSum += z;
    out.logOddsRatioSum -= Math.log1p(Math.exp(-z));
  }
  return out;
}

describe('the reward statistics of a preference step', () => {
  it('are summed across micro-batches beside the gradient, equal to evaluation and to TRL in float64, with dropout in the model', async () => {
    const config = modelConfigFromJson(
      { ...GPT2, resid_pdrop: 0.1, embd_pdrop: 0.1, attn_pdrop: 0.1 },
      'gpt2',
    );
    const model = buildModel(config, randomModelWeights(config, 8));
    const params = await withLora(model, 0.3, 0.1);
    // Some labels the model predicts (for the token accuracy), in one pair per batch.
    const batches = [pairBatch(3, 21), pairBatch(4, 22)].map((b) =>
      withPredictedTokens(model, b, 1),
    );
    for (const s of SETTINGS) {
      const label = `${s.kind} ${s.kind === 'dpo' ? (s.loss ?? 'sigmoid') : ''}`;
      const objective = objectiveOf(s);
      expect(objective.stats).toEqual(PAIR_STATS);
      const acc = new GradientAccumulator(params, objective.stats.length);
      const before = tf.memory().numTensors;
      for (const [i, batch] of batches.entries()) {
        const loss = objective.loss(model, batch, { training: true, seed: 40 + i });
        acc.add(
          () => loss.sum(),
          () => loss.stats(),
        );
        loss.dispose();
      }
      const trained = pairStatSums((await acc.take()).stats);
      expect(tf.memory().numTensors, label).toBe(before);

      const evaluated = await evaluatePairs(model, batches, s);
      expect(trained.correct, label).toBe(evaluated.correct);
      expect(trained.chosenCorrectTokens, label).toBe(evaluated.chosenCorrectTokens);
      for (const k of PAIR_STATS.slice(1)) {
        expect(Math.abs(trained[k] - evaluated[k]), `${label} ${k}`).toBeLessThan(
          1e-5 * Math.max(1, Math.abs(evaluated[k])),
        );
      }

      const want = pairStatSums([]);
      for (const batch of batches) {
        const one = await rewardsFloat64(model, batch, s);
        for (const k of PAIR_STATS) want[k] += one[k];
      }
      expect(trained.correct, label).toBe(want.correct);
      expect(want.correct, label).toBeGreaterThan(0); // a test of the count, not of zeros
      expect(want.correct, label).toBeLessThan(7);
      expect(trained.chosenCorrectTokens, label).toBe(want.chosenCorrectTokens);
      if (s.kind === 'dpo') {
        expect(want.chosenCorrectTokens, label).toBeGreaterThan(0);
        expect(want.chosenCorrectTokens, label).toBeLessThan(want.chosenTokens);
      }
      for (const k of PAIR_STATS.slice(1)) {
        expect(Math.abs(trained[k] - want[k]), `${label} ${k}`).toBeLessThan(
          1e-5 * Math.max(10, Math.abs(want[k])),
        );
      }
      expect(want.chosenLogpSum, label).not.toBeCloseTo(want.rejectedLogpSum, 2);
    }
    model.dispose();
  });

  it("the token loss has TRL's token metrics instead, and pairStatSums reads an empty list as zeros", () => {
    expect(objectiveOf({ kind: 'sft' }).stats).toEqual(['correct', 'entropy']);
    const zero = Object.fromEntries(PAIR_STATS.map((k) => [k, 0]));
    expect(pairStatSums(new Float32Array(0))).toEqual(zero);
    expect(pairStatSums([2, 0.5, -1, -30, -41])).toEqual({
      ...zero,
      ...{ correct: 2, chosenSum: 0.5, rejectedSum: -1 },
      ...{ chosenLogpSum: -30, rejectedLogpSum: -41 },
    });
  });

  it('a DPO batch scored at the reference has zero rewards and no correct pair', async () => {
    const config = modelConfigFromJson(GPT2, 'gpt2');
    const model = buildModel(config, randomModelWeights(config, 9));
    await withLora(model, 0); // B = 0: the policy is its reference
    const batch = pairBatch(3, 23);
    const loss = objectiveOf({ kind: 'dpo', beta: BETA }).loss(model, batch, {});
    loss.sum().dispose();
    const got = pairStatSums(await loss.stats()!.data());
    loss.dispose();
    expect(got).toMatchObject({ correct: 0, chosenSum: 0, rejectedSum: 0 });
    expect(got.chosenLogpSum).toBeLessThan(0); // the policy's own log-probabilities
    model.dispose();
  });
});
