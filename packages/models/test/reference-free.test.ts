// ORPO, SimPO and CPO (reference-free.ts, objective.ts) against independent
// statements of them, in float64 from the model's logits:
// - each loss is its paper's formula on length-averaged log-probabilities
//   (ORPO: TRL's NLL over the chosen prompt and response - beta log
//   sigmoid(log odds c - log odds r); SimPO:
//   -log sigmoid(beta (c - r) - gamma), + alpha (-c) for TRL's CPO-SimPO)
//   or, for CPO, TRL's cpo_loss on summed ones (the means for IPO) plus
//   alpha times the chosen response's mean NLL;
// - ORPO and CPO equal TRL's loss (NLL averaged over the batch's chosen
//   tokens) on a batch whose chosen responses have one length;
// - the gradients match central finite differences;
// - evaluation gives TRL's rewards (beta times the log-probabilities the
//   loss compares);
// - no dropout is drawn while training.
import { useBackend } from '@lorafleet/core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type ForwardPassOptions,
  IGNORE_INDEX,
  type PreferenceSettings,
  type TokenBatch,
  buildModel,
  evaluatePairs,
  modelConfigFromJson,
  objectiveOf,
  pairMetrics,
  pairSequences,
  randomModelWeights,
} from '../src/index.js';
import {
  BETA,
  GPT2,
  T,
  build,
  expectFiniteDifferences,
  logitsOf,
  logpsFloat64,
  objectiveLossSum,
  pairBatch,
  withLora,
} from './pair-fixtures.js';

beforeAll(async () => {
  await useBackend('cpu');
});

const ORPO: PreferenceSettings = { kind: 'orpo', beta: BETA };
const SIMPO: PreferenceSettings = { kind: 'simpo', beta: 2, gamma: 0.7 };
const CPO_SIMPO: PreferenceSettings = { kind: 'simpo', beta: 2, gamma: 0.7, alpha: 0.4 };
const CPO: PreferenceSettings = { kind: 'cpo', beta: 0.05, alpha: 0.8 };
const CPO_HINGE: PreferenceSettings = { kind: 'cpo', beta: 0.05, alpha: 1, loss: 'hinge' };
const CPO_IPO: PreferenceSettings = { kind: 'cpo', beta: BETA, alpha: 0.3, loss: 'ipo' };
// AlphaPO's reward shape on SimPO's means and on CPO's sums
const ALPHAPO: PreferenceSettings = { kind: 'simpo', beta: 2, gamma: 0.7, alphaPo: 0.25 };
const CPO_ALPHAPO: PreferenceSettings = { kind: 'cpo', beta: 0.5, alpha: 0.8, alphaPo: -0.05 };
const ALL = [ORPO, SIMPO, CPO_SIMPO, CPO, CPO_HINGE, CPO_IPO, ALPHAPO, CPO_ALPHAPO];

/** AlphaPO's shape of a log-probability u, float64: (1 - exp(-a u)) / a; u itself at a = 0. */
const shape = (s: PreferenceSettings, u: number) => {
  const a = s.kind === 'simpo' || s.kind === 'cpo' ? (s.alphaPo ?? 0) : 0;
  return a === 0 ? u : (1 - Math.exp(-a * u)) / a;
};

/** A sequence's mean and summed log-probability over its response; a chosen one's also over its prompt too. */
type Side = { mean: number; sum: number; tokens: number; whole: { sum: number; tokens: number } };

const logSigmoid = (x: number) => -Math.log1p(Math.exp(-x));

/** The papers' (and TRL's cpo_loss) per-pair losses from the chosen and rejected sides, float64. */
function pairLoss(s: PreferenceSettings, chosen: Side, rejected: Side): number {
  const [c, r] = [chosen.mean, rejected.mean];
  if (s.kind === 'orpo') {
    // TRL's ORPOTrainer: the NLL over the chosen prompt and response, the odds on the responses.
    const logOdds = c - r - (Math.log(-Math.expm1(c)) - Math.log(-Math.expm1(r)));
    return -chosen.whole.sum / chosen.whole.tokens - s.beta * logSigmoid(logOdds);
  }
  if (s.kind === 'simpo')
    return -logSigmoid(s.beta * (shape(s, c) - shape(s, r)) - s.gamma) - (s.alpha ?? 0) * c;
  if (s.kind !== 'cpo') throw new Error('not reference-free');
  const h =
    s.loss === 'ipo' ? shape(s, c) - shape(s, r) : shape(s, chosen.sum) - shape(s, rejected.sum);
  const preference =
    s.loss === 'ipo'
      ? (h - 1 / (2 * s.beta)) ** 2
      : s.loss === 'hinge'
        ? Math.max(0, 1 - s.beta * h)
        : -logSigmoid(s.beta * h);
  return preference - s.alpha * c;
}

/** TRL's rewards, float64: beta times what the loss compares (means, or CPO's sums). */
const reward = (s: PreferenceSettings, side: Side) =>
  s.beta *
  (s.kind === 'orpo'
    ? side.mean
    : shape(s, s.kind === 'cpo' && s.loss !== 'ipo' ? side.sum : side.mean));

/**
 * Each sequence's mean log-probability, float64, and its labelled tokens; and
 * over every token after the first up to the response's end (`whole`: for a
 * chosen sequence, its prompt and response).
 */
async function meansFloat64(model: ReturnType<typeof build>, batch: TokenBatch): Promise<Side[]> {
  const seqs = pairSequences(batch);
  const logits = await logitsOf(model, seqs);
  const labels = Int32Array.from(seqs.labels);
  for (let i = 0; i < seqs.batchSize; i++) {
    const row = labels.subarray(i * T, (i + 1) * T);
    const end = row.findLastIndex((l) => l !== IGNORE_INDEX) + 1;
    for (let t = 1; t < end; t++) row[t] = seqs.ids[i * T + t]!;
  }
  const whole = logpsFloat64(logits, { ...seqs, labels });
  return logpsFloat64(logits, seqs).map(({ sum, tokens }, i) => ({
    mean: sum / tokens,
    sum,
    tokens,
    whole: whole[i]!,
  }));
}

describe('ORPO, SimPO and CPO', () => {
  it("each loss is its paper's (ORPO's NLL term TRL's), computed in float64 from the logits", async () => {
    const model = build();
    await withLora(model, 0.3);
    const batch = pairBatch(4, 2);
    const means = await meansFloat64(model, batch);
    for (const s of ALL) {
      let expected = 0;
      for (let b = 0; b < 4; b++) expected += pairLoss(s, means[2 * b]!, means[2 * b + 1]!);
      const loss = objectiveLossSum(model, batch, s);
      const got = (await loss.data())[0]!;
      expect(Math.abs(got - expected), s.kind).toBeLessThan(1e-5 * Math.max(1, Math.abs(expected)));
      loss.dispose();
    }
    expect(objectiveOf(ORPO).unit).toBe('pairs');
    expect(objectiveOf(SIMPO).count(batch)).toBe(4);
    // CPO-SimPO is SimPO plus alpha x the chosen responses' mean NLL; CPO with alpha 0 is its preference term.
    const [simpo, cpoSimpo] = [SIMPO, CPO_SIMPO].map(
      (s) => objectiveLossSum(model, batch, s).dataSync()[0]!,
    );
    const chosenNll = [0, 1, 2, 3].reduce((a, b) => a - means[2 * b]!.mean, 0);
    expect(cpoSimpo! - simpo!).toBeCloseTo(0.4 * chosenNll, 4);
    expect(chosenNll).toBeGreaterThan(1);
    model.dispose();
  });

  it("CPO equals TRL's CPOTrainer loss where the chosen responses have one length", async () => {
    const model = build();
    await withLora(model, 0.3);
    const B = 3;
    const batch = pairBatch(B, 12);
    for (let b = 0; b < B; b++) {
      const row = 2 * b * T;
      for (let t = 0; t < T; t++)
        batch.labels[row + t] = t >= 3 && t < 7 ? batch.ids[row + t]! : IGNORE_INDEX;
    }
    const sides = await meansFloat64(model, batch);
    // TRL: losses.mean() + cpo_alpha * cross_entropy over every chosen token of the batch.
    let [nll, chosenTokens, preference] = [0, 0, 0];
    for (let b = 0; b < B; b++) {
      const [c, r] = [sides[2 * b]!, sides[2 * b + 1]!];
      [nll, chosenTokens] = [nll - c.sum, chosenTokens + c.tokens];
      preference += -logSigmoid(0.05 * (c.sum - r.sum));
    }
    const trl = preference / B + 0.8 * (nll / chosenTokens);
    const loss = objectiveLossSum(model, batch, CPO);
    expect((await loss.data())[0]! / B).toBeCloseTo(trl, 5);
    loss.dispose();
    model.dispose();
  });

  it("ORPO equals TRL's ORPOTrainer loss where the chosen responses have one length", async () => {
    const model = build();
    await withLora(model, 0.3);
    const B = 3;
    const batch = pairBatch(B, 8);
    // Every chosen response: labelled tokens 3..7 (5 tokens); rejected ones keep their lengths.
    for (let b = 0; b < B; b++) {
      const row = 2 * b * T;
      for (let t = 0; t < T; t++)
        batch.labels[row + t] = t >= 3 && t < 8 ? batch.ids[row + t]! : IGNORE_INDEX;
    }
    const means = await meansFloat64(model, batch);
    // TRL: cross_entropy over every chosen prompt and response token of the batch, minus the
    // mean of beta log sigmoid(log odds) of the responses.
    let [nll, chosenTokens, ratio] = [0, 0, 0];
    for (let b = 0; b < B; b++) {
      const [c, r] = [means[2 * b]!, means[2 * b + 1]!];
      [nll, chosenTokens] = [nll - c.whole.sum, chosenTokens + c.whole.tokens];
      const logOdds =
        c.mean - r.mean - (Math.log1p(-Math.exp(c.mean)) - Math.log1p(-Math.exp(r.mean)));
      ratio += BETA * logSigmoid(logOdds);
    }
    expect(means.filter((_, i) => i % 2 === 1).some((m) => m.tokens !== 5)).toBe(true);
    const trl = nll / chosenTokens - ratio / B;
    const loss = objectiveLossSum(model, batch, ORPO);
    expect((await loss.data())[0]! / B).toBeCloseTo(trl, 5);
    loss.dispose();
    model.dispose();
  });

  it('the gradients match central finite differences', async () => {
    const model = build();
    const params = await withLora(model, 0.3);
    const batch = pairBatch(2, 4);
    const theta = params.read();
    for (const s of ALL) {
      const lossAt = (values: Float32Array) => {
        params.write(values);
        const l = objectiveLossSum(model, batch, s);
        const v = l.dataSync()[0]!;
        l.dispose();
        return v;
      };
      params.write(theta);
      const prepared = objectiveOf(s).loss(model, batch, {});
      const { grads } = params.lossAndGrads(() => prepared.sum());
      prepared.dispose();
      expectFiniteDifferences(theta, grads, lossAt, JSON.stringify(s), 17);
    }
    params.write(theta);
    model.dispose();
  });

  it("evaluatePairs gives the loss and TRL's rewards (beta x what the loss compares), in float64", async () => {
    const model = build();
    await withLora(model, 0.3);
    const batches = [pairBatch(3, 6), pairBatch(2, 7)];
    for (const s of ALL) {
      const expected = { loss: 0, correct: 0, chosen: 0, rejected: 0 };
      for (const batch of batches) {
        const sides = await meansFloat64(model, batch);
        for (let b = 0; b < batch.batchSize; b++) {
          const [c, r] = [sides[2 * b]!, sides[2 * b + 1]!];
          expected.loss += pairLoss(s, c, r);
          expected.correct += reward(s, c) > reward(s, r) ? 1 : 0;
          [expected.chosen, expected.rejected] = [
            expected.chosen + reward(s, c),
            expected.rejected + reward(s, r),
          ];
        }
      }
      const got = pairMetrics(await evaluatePairs(model, batches, s));
      expect(got.pairs).toBe(5);
      expect(got.loss).toBeCloseTo(expected.loss / 5, 5);
      expect(got.rewardAccuracy).toBe(expected.correct / 5);
      expect(got.rewardChosen).toBeCloseTo(expected.chosen / 5, 5);
      expect(got.rewardRejected).toBeCloseTo(expected.rejected / 5, 5);
      expect(got.rewardMargin).toBeCloseTo((expected.chosen - expected.rejected) / 5, 5);
    }
    model.dispose();
  });

  it('trains without dropout (TRL): with every dropout at 0.1, the loss and gradients of an eval pass', async () => {
    const config = modelConfigFromJson(
      { ...GPT2, resid_pdrop: 0.1, embd_pdrop: 0.1, attn_pdrop: 0.1 },
      'gpt2',
    );
    const model = buildModel(config, randomModelWeights(config, 8));
    const params = await withLora(model, 0.3, 0.1);
    const batch = pairBatch(2, 9);
    for (const s of ALL) {
      const run = (options: ForwardPassOptions) => {
        const prepared = objectiveOf(s).loss(model, batch, options);
        const out = params.lossAndGrads(() => prepared.sum());
        prepared.dispose();
        return out;
      };
      const plain = run({});
      const trained = run({ training: true, seed: 3 });
      expect(trained.loss, s.kind).toBe(plain.loss);
      expect(trained.grads).toEqual(plain.grads);
    }
    model.dispose();
  });
});
