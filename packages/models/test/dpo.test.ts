// DPO (dpo.ts, objective.ts) against independent statements of it:
// - the reference pass is the base model: a model built from the same weights
//   without LoRA gives the same log-probabilities, and the adapter is back on
//   afterwards (also after an error);
// - the loss equals TRL's sigmoid loss computed in float64 from the logits of
//   the policy and of the base model;
// - at the reference (B = 0) the gradient is beta/2 (grad NLL(chosen) -
//   grad NLL(rejected)), from the token loss this project already checks
//   against transformers;
// - away from it, the gradient matches central finite differences.
import { DEFAULT_LORA, tf, useBackend } from '@lorafleet/core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  DPO_LOSS_TYPES,
  type DpoSettings,
  type ForwardPassOptions,
  IGNORE_INDEX,
  type TokenBatch,
  addLora,
  buildModel,
  countPairs,
  pairMetrics,
  evaluatePairs,
  modelConfigFromJson,
  objectiveOf,
  pairSequences,
  positionNll,
  randomModelWeights,
  referenceLogps,
  sequenceLogps,
  tokenNllSum,
  withAdaptersOff,
} from '../src/index.js';
import { LLAMA_CASES, caseConfig } from './llama-fixtures.js';
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

describe('DPO', () => {
  it('the reference is the base model, and the adapter is back on afterwards', async () => {
    const [model, base] = [build(), build()];
    await withLora(model, 0.3);
    const batch = pairBatch(3, 1);
    const ref = referenceLogps(model, batch);
    const plain = sequenceLogps(base, pairSequences(batch));
    expect(await ref.data()).toEqual(await plain.data());
    const on = sequenceLogps(model, pairSequences(batch));
    expect(Array.from(await on.data())).not.toEqual(Array.from(await ref.data()));
    expect(() =>
      withAdaptersOff(model, () => {
        throw new Error('inside');
      }),
    ).toThrow('inside');
    expect(model.linears().every((l) => l.activeAdapter?.name === 'default')).toBe(true);
    const again = sequenceLogps(model, pairSequences(batch));
    expect(await again.data()).toEqual(await on.data());
    tf.dispose([ref, plain, on, again]);
    model.dispose();
    base.dispose();
  });

  it('the reference of a Llama with DoRA, embedding LoRA and an NF4 base is that Llama without them', async () => {
    const config = caseConfig(LLAMA_CASES[0]!);
    const weights = randomModelWeights(config, 12);
    const [model, base] = [buildModel(config, weights, 'nf4'), buildModel(config, weights, 'nf4')];
    const settings = { ...DEFAULT_LORA, r: 4, useDora: true };
    const layers = await addLora(
      model.linears(),
      'default',
      settings,
      { kind: 'kaiming' },
      'all-linear',
      3,
    );
    for (const l of layers)
      l.activeAdapter!.b.assign(tf.randomNormal(l.activeAdapter!.b.shape, 0, 0.3, 'float32', 5));
    const embedding = model.embeddings()[0]!;
    const e = embedding.addAdapter('default', { ...DEFAULT_LORA, r: 4 }, 4);
    e.a.assign(tf.randomNormal(e.a.shape, 0, 0.3, 'float32', 6)); // A starts at zero: make the delta real
    const batch = pairBatch(2, 10, config.vocabSize);
    const ref = referenceLogps(model, batch);
    const plain = sequenceLogps(base, pairSequences(batch));
    const on = sequenceLogps(model, pairSequences(batch));
    expect(await ref.data()).toEqual(await plain.data());
    expect(Array.from(await on.data())).not.toEqual(Array.from(await ref.data()));
    expect(embedding.activeAdapter?.name).toBe('default');
    expect(model.linears().every((l) => l.activeAdapter?.magnitude)).toBe(true);
    tf.dispose([ref, plain, on]);
    model.dispose();
    base.dispose();
  });

  it("each loss type is TRL's dpo_loss, computed in float64 from the two models' logits (AOT's sorted over the batch)", async () => {
    const [model, base] = [build(), build()];
    await withLora(model, 0.3);
    const batch = pairBatch(4, 2);
    const seqs = pairSequences(batch);
    const policy = logpsFloat64(await logitsOf(model, seqs), seqs);
    const reference = logpsFloat64(await logitsOf(base, seqs), seqs);
    // TRL's dpo_loss in float64, from c and r (the chosen and rejected log-ratios) and h = c - r.
    const softplus = (x: number) => Math.log1p(Math.exp(x));
    const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
    const logSigmoid = (x: number) => -softplus(-x);
    const z = (h: number) => BETA * h;
    const exo = (h: number, e: number) =>
      sigmoid(z(h)) * (logSigmoid(z(h)) - Math.log(1 - e)) +
      sigmoid(-z(h)) * (logSigmoid(-z(h)) - Math.log(e));
    const cases: [DpoSettings, (c: number, r: number) => number][] = [
      [{ beta: BETA }, (c, r) => softplus(-z(c - r))], // -log sigmoid(beta h)
      [
        { beta: BETA, labelSmoothing: 0.1 },
        (c, r) => 0.9 * softplus(-z(c - r)) + 0.1 * softplus(z(c - r)),
      ],
      [{ beta: BETA, loss: 'ipo' }, (c, r) => (c - r - 1 / (2 * BETA)) ** 2],
      [{ beta: BETA, loss: 'hinge' }, (c, r) => Math.max(0, 1 - z(c - r))],
      [
        { beta: BETA, loss: 'robust', labelSmoothing: 0.1 },
        (c, r) => (-0.9 * logSigmoid(z(c - r)) + 0.1 * logSigmoid(-z(c - r))) / 0.8,
      ],
      [{ beta: BETA, loss: 'exo_pair' }, (c, r) => exo(c - r, 1e-3)],
      [{ beta: BETA, loss: 'exo_pair', labelSmoothing: 0.2 }, (c, r) => exo(c - r, 0.2)],
      [{ beta: BETA, loss: 'sppo_hard' }, (c, r) => (c - 0.5 / BETA) ** 2 + (r + 0.5 / BETA) ** 2],
      [
        { beta: BETA, loss: 'nca_pair' },
        (c, r) => -logSigmoid(z(c)) - 0.5 * logSigmoid(-z(c)) - 0.5 * logSigmoid(-z(r)),
      ],
      [{ beta: BETA, loss: 'apo_zero' }, (c, r) => 1 - sigmoid(z(c)) + sigmoid(z(r))],
      [{ beta: BETA, loss: 'apo_down' }, (c, r) => sigmoid(z(c)) + 1 - sigmoid(z(c - r))],
      [{ beta: BETA, loss: 'bco_pair' }, (c, r) => -logSigmoid(z(c)) - logSigmoid(-z(r))],
      [{ beta: BETA, loss: 'sigmoid_norm' }, (c, r) => softplus(-z(c - r))],
    ];
    for (const [settings, pairLoss] of cases) {
      // IPO and sigmoid_norm compare log-probabilities averaged over each response's tokens.
      const averaged = settings.loss === 'ipo' || settings.loss === 'sigmoid_norm';
      const per = (i: number, logps: { sum: number; tokens: number }[]) =>
        averaged ? logps[i]!.sum / logps[i]!.tokens : logps[i]!.sum;
      let expected = 0;
      for (let b = 0; b < 4; b++) {
        const c = per(2 * b, policy) - per(2 * b, reference);
        const r = per(2 * b + 1, policy) - per(2 * b + 1, reference);
        expected += pairLoss(c, r);
      }
      const loss = objectiveLossSum(model, batch, { kind: 'dpo', ...settings });
      const got = (await loss.data())[0]!;
      const label = `${String(settings.loss ?? 'sigmoid')} ${settings.labelSmoothing ?? ''}`;
      expect(Math.abs(got - expected), label).toBeLessThan(1e-5 * Math.max(1, Math.abs(expected)));
      loss.dispose();
    }
    const moved = policy.some((p, i) => Math.abs(p.sum - reference[i]!.sum) > 1e-3);
    expect(moved).toBe(true); // the adapter changed the log-probabilities
    // AOT: the batch's policy margins and reference margins, each sorted, compared in order
    // (unpaired: its chosen log-ratios and its rejected ones), smoothed as the sigmoid loss.
    const sortDown = (v: number[]) => [...v].sort((a, b) => b - a);
    const smoothed = (h: number, e: number) => (1 - e) * softplus(-z(h)) + e * softplus(z(h));
    const aotSum = (x: number[], y: number[], e: number) =>
      sortDown(x).reduce((sum, xi, i) => sum + smoothed(xi - sortDown(y)[i]!, e), 0);
    const perPair = (f: (b: number) => number) => Array.from({ length: 4 }, (_, b) => f(b));
    const logRatio = (i: number) => policy[i]!.sum - reference[i]!.sum;
    const margins = (logps: { sum: number }[]) =>
      perPair((b) => logps[2 * b]!.sum - logps[2 * b + 1]!.sum);
    const aot: [DpoSettings, number][] = [
      [{ beta: BETA, loss: 'aot' }, aotSum(margins(policy), margins(reference), 0)],
      [
        { beta: BETA, loss: 'aot_unpaired', labelSmoothing: 0.1 },
        aotSum(
          perPair((b) => logRatio(2 * b)),
          perPair((b) => logRatio(2 * b + 1)),
          0.1,
        ),
      ],
    ];
    // Sorting matters on this batch (for aot_unpaired): unsorted, the sum differs.
    const unsorted = perPair((b) => smoothed(logRatio(2 * b) - logRatio(2 * b + 1), 0.1));
    expect(Math.abs(aot[1]![1] - unsorted.reduce((a, b) => a + b))).toBeGreaterThan(1e-3);
    for (const [settings, expected] of aot) {
      const loss = objectiveLossSum(model, batch, { kind: 'dpo', ...settings });
      const got = (await loss.data())[0]!;
      expect(Math.abs(got - expected), String(settings.loss)).toBeLessThan(
        1e-5 * Math.max(1, Math.abs(expected)),
      );
      loss.dispose();
    }
    // DiscoPOP, sft, a weighted mixture (MPO) and the f-divergences' scores, per pair b.
    const ratio = (i: number) => policy[i]!.sum - reference[i]!.sum;
    const chosenNll = (b: number) => -policy[2 * b]!.sum / policy[2 * b]!.tokens;
    const discopop = (h: number, tau: number) => {
      const mix = sigmoid(z(h) / tau);
      return softplus(-z(h)) * (1 - mix) + Math.exp(-z(h)) * mix;
    };
    const more: [DpoSettings, (c: number, r: number, b: number) => number][] = [
      [{ beta: BETA, loss: 'discopop' }, (c, r) => discopop(c - r, 0.05)],
      [{ beta: BETA, loss: 'discopop', discopopTau: 0.5 }, (c, r) => discopop(c - r, 0.5)],
      [{ beta: BETA, loss: 'sft' }, (_c, _r, b) => chosenNll(b)],
      [
        { beta: BETA, loss: ['sigmoid', 'bco_pair', 'sft'], lossWeights: [0.8, 0.2, 1] },
        (c, r, b) =>
          0.8 * softplus(-z(c - r)) + 0.2 * (-logSigmoid(z(c)) - logSigmoid(-z(r))) + chosenNll(b),
      ],
      [
        { beta: BETA, fDivergence: 'forward_kl' },
        (c, r) => softplus(-z(1 - Math.exp(-c) - (1 - Math.exp(-r)))),
      ],
      [
        { beta: BETA, fDivergence: 'js_divergence', loss: 'hinge' },
        (c, r) => Math.max(0, 1 - z(logSigmoid(c) - logSigmoid(r))),
      ],
      [
        { beta: BETA, fDivergence: 'alpha_divergence', fAlpha: 0.3 },
        (c, r) => softplus(-z((Math.exp(-0.7 * c) - Math.exp(-0.7 * r)) / -0.7)),
      ],
    ];
    for (const [settings, pairLoss] of more) {
      let expected = 0;
      for (let b = 0; b < 4; b++) expected += pairLoss(ratio(2 * b), ratio(2 * b + 1), b);
      const loss = objectiveLossSum(model, batch, { kind: 'dpo', ...settings });
      const got = (await loss.data())[0]!;
      const label = JSON.stringify(settings);
      expect(Math.abs(got - expected), label).toBeLessThan(1e-5 * Math.max(1, Math.abs(expected)));
      loss.dispose();
    }
    model.dispose();
    base.dispose();
  });

  it("evaluatePairs' DPO loss and reward metrics are TRL's, computed in float64", async () => {
    const [model, base] = [build(), build()];
    await withLora(model, 0.3);
    const batches = [pairBatch(3, 6), pairBatch(2, 7)];
    const expected = { loss: 0, correct: 0, chosen: 0, rejected: 0 };
    for (const batch of batches) {
      const seqs = pairSequences(batch);
      const p = logpsFloat64(await logitsOf(model, seqs), seqs).map((x) => x.sum);
      const r = logpsFloat64(await logitsOf(base, seqs), seqs).map((x) => x.sum);
      for (let b = 0; b < batch.batchSize; b++) {
        const [c, j] = [BETA * (p[2 * b]! - r[2 * b]!), BETA * (p[2 * b + 1]! - r[2 * b + 1]!)];
        expected.loss += Math.log1p(Math.exp(-(c - j)));
        expected.correct += c > j ? 1 : 0;
        [expected.chosen, expected.rejected] = [expected.chosen + c, expected.rejected + j];
      }
    }
    const got = pairMetrics(await evaluatePairs(model, batches, { kind: 'dpo', beta: BETA }));
    expect(got.pairs).toBe(5);
    expect(got.loss).toBeCloseTo(expected.loss / 5, 5);
    expect(got.rewardAccuracy).toBe(expected.correct / 5);
    expect(got.rewardChosen).toBeCloseTo(expected.chosen / 5, 5);
    expect(got.rewardRejected).toBeCloseTo(expected.rejected / 5, 5);
    expect(got.rewardMargin).toBeCloseTo((expected.chosen - expected.rejected) / 5, 5);
    model.dispose();
    base.dispose();
  });

  it('at the reference, loss = pairs x log 2 and the gradient is beta/2 (grad NLL(chosen) - grad NLL(rejected))', async () => {
    const model = build();
    const params = await withLora(model, 0);
    const batch = pairBatch(3, 3);
    const dpo = objectiveOf({ kind: 'dpo', beta: BETA });
    const prepared = dpo.loss(model, batch, {});
    const got = params.lossAndGrads(() => prepared.sum());
    prepared.dispose();
    expect(got.loss).toBeCloseTo(3 * Math.LN2, 5);
    const seqs = pairSequences(batch);
    const side = (k: number): TokenBatch => {
      const pick = (a: Int32Array) =>
        Int32Array.from({ length: 3 * T }, (_, i) => a[(2 * Math.floor(i / T) + k) * T + (i % T)]!);
      return { ids: pick(seqs.ids), labels: pick(seqs.labels), batchSize: 3, seqLen: T };
    };
    const chosen = params.lossAndGrads(() => tokenNllSum(model, side(0)));
    const rejected = params.lossAndGrads(() => tokenNllSum(model, side(1)));
    const expected = chosen.grads.map((g, i) => (BETA / 2) * (g - rejected.grads[i]!));
    const scale = Math.max(...expected.map(Math.abs));
    expect(scale).toBeGreaterThan(0);
    const diff = Math.max(...got.grads.map((g, i) => Math.abs(g - expected[i]!)));
    expect(diff / scale).toBeLessThan(1e-4);
    model.dispose();
  });

  it('away from the reference, the gradient of every loss type matches central finite differences', async () => {
    const model = build();
    const params = await withLora(model, 0.3);
    const batch = pairBatch(2, 4);
    const theta = params.read();
    const all: DpoSettings[] = [
      { beta: BETA },
      { beta: BETA, labelSmoothing: 0.2 },
      { beta: BETA, loss: 'ipo' },
      { beta: 2, loss: 'hinge' }, // beta h near 1: the hinge is active for some pairs
      // Every other loss type, a new one included.
      ...DPO_LOSS_TYPES.filter((l) => !['sigmoid', 'ipo', 'hinge'].includes(l)).map((loss) => ({
        beta: BETA,
        loss,
        ...(loss === 'robust' ? { labelSmoothing: 0.1 } : {}),
      })),
      { beta: BETA, loss: ['sigmoid', 'bco_pair', 'sft'], lossWeights: [0.8, 0.2, 1] },
      { beta: BETA, fDivergence: 'forward_kl' },
      { beta: BETA, fDivergence: 'js_divergence', loss: 'ipo' },
      { beta: BETA, fDivergence: 'alpha_divergence', fAlpha: 0.3 },
      { beta: BETA, ldAlpha: 0.4 },
    ];
    for (const settings of all) {
      const dpo = { kind: 'dpo' as const, ...settings };
      const lossAt = (values: Float32Array) => {
        params.write(values);
        const l = objectiveLossSum(model, batch, dpo);
        const v = l.dataSync()[0]!;
        l.dispose();
        return v;
      };
      params.write(theta);
      const prepared = objectiveOf(dpo).loss(model, batch, {}); // the reference pass, untaped
      const { grads } = params.lossAndGrads(() => prepared.sum());
      prepared.dispose();
      expectFiniteDifferences(theta, grads, lossAt, JSON.stringify(settings));
    }
    params.write(theta);
    model.dispose();
  });

  it('trains without dropout (TRL): a GPT-2 and a Llama with every dropout at 0.1 give the loss and gradients of an eval pass, checkpointed or not, with WPO or not', async () => {
    const gpt2 = modelConfigFromJson(
      { ...GPT2, resid_pdrop: 0.1, embd_pdrop: 0.1, attn_pdrop: 0.1 },
      'gpt2',
    );
    const llama = caseConfig({
      ...LLAMA_CASES[0]!,
      json: { ...LLAMA_CASES[0]!.json, attention_dropout: 0.1 },
    });
    for (const config of [gpt2, llama]) {
      const model = buildModel(config, randomModelWeights(config, 8));
      const params = await withLora(model, 0.3, 0.1);
      const batch = pairBatch(2, 9, config.vocabSize);
      // WPO's weights too: from the same logits, chunked and recomputed under checkpointing.
      for (const useWeighting of [false, true]) {
        const run = (options: ForwardPassOptions) => {
          const dpo = { kind: 'dpo' as const, beta: BETA, useWeighting };
          const loss = objectiveOf(dpo).loss(model, batch, options);
          const out = params.lossAndGrads(() => loss.sum());
          loss.dispose();
          return out;
        };
        const plain = run({});
        expect(plain.grads.some((g) => g !== 0)).toBe(true);
        for (const options of [
          { training: true, seed: 3 },
          { training: true, seed: 4, gradientCheckpointing: true },
        ]) {
          const trained = run(options);
          expect(trained.loss).toBe(plain.loss);
          expect(trained.grads).toEqual(plain.grads);
        }
      }
      // The token loss still draws its masks: the switch is DPO's.
      const sft = (options: ForwardPassOptions) =>
        params.lossAndGrads(() => tokenNllSum(model, pairSequences(batch), options)).loss;
      expect(sft({ training: true, seed: 3 })).not.toBe(sft({}));
      model.dispose();
    }
  });

  it('takes the logits a chunk at a time as the token loss does: the same per-position NLL and gradients', async () => {
    const model = build();
    const params = await withLora(model, 0.3);
    const seqs = pairSequences(pairBatch(3, 12)); // 6 x 10 positions
    const weights = tf.range(1, 61); // tell the positions apart
    const weighted = (options: ForwardPassOptions, chunkRows?: number) => () =>
      tf.sum(tf.mul(positionNll(model, seqs, options, chunkRows), weights)) as tf.Scalar;
    const whole = params.lossAndGrads(weighted({}));
    const checkpointed = { training: true, gradientCheckpointing: true, dropout: false };
    for (const chunkRows of [7, 60, undefined]) {
      const chunked = params.lossAndGrads(weighted(checkpointed, chunkRows));
      expect(Math.abs(chunked.loss - whole.loss)).toBeLessThan(1e-6 * whole.loss);
      const scale = Math.max(...whole.grads.map(Math.abs));
      const diff = Math.max(...chunked.grads.map((g, i) => Math.abs(g - whole.grads[i]!)));
      expect(diff / scale).toBeLessThan(1e-5);
    }
    // Training without checkpointing, and evaluation of a small batch, take the whole logits.
    const a = positionNll(model, seqs, { training: true, dropout: false }, 7);
    const b = positionNll(model, seqs, {}, 7);
    const c = positionNll(model, seqs);
    expect(await a.data()).toEqual(await c.data());
    expect(await b.data()).toEqual(await c.data());
    tf.dispose([a, b, c, weights]);
    model.dispose();
  });

  it('a big vocabulary: the reference pass never holds all its logits', async () => {
    // 32 pairs x 2 x 10 positions of 40000 logits: past 2^22, so chunks of 104 positions.
    const config = modelConfigFromJson({ ...GPT2, vocab_size: 40000, n_layer: 1 }, 'gpt2');
    const model = buildModel(config, randomModelWeights(config, 7));
    await withLora(model, 0.3);
    const batch = pairBatch(32, 13, 40000);
    const whole = await withAdaptersOff(model, () => logitsOf(model, pairSequences(batch))).then(
      (logits) => logpsFloat64(logits, pairSequences(batch), 40000),
    );
    let ref: tf.Tensor1D | undefined;
    const { peakBytes } = await tf.profile(() => {
      ref = referenceLogps(model, batch);
    });
    const got = await ref!.data();
    whole.forEach((w, i) => expect(Math.abs(got[i]! - w.sum)).toBeLessThan(1e-4 * Math.abs(w.sum)));
    expect(peakBytes).toBeLessThan(0.5 * 640 * 40000 * 4); // never all the logits
    ref!.dispose();
    model.dispose();
  });

  it('counts pairs with a labelled token on both sides, and refuses an odd row', () => {
    const batch = pairBatch(3, 5);
    expect(countPairs(batch)).toBe(3);
    batch.labels.fill(IGNORE_INDEX, 2 * T, 3 * T); // pair 1's chosen side: no label
    expect(countPairs(batch)).toBe(2);
    expect(() => pairSequences({ ...batch, seqLen: 2 * T - 1 })).toThrow('odd');
  });
});
