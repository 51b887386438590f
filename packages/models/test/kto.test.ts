// KTO (kto.ts) from first principles: the loss equals its formula computed
// in float64 from the logits of the policy and of the base model (the
// reference), with the KL estimate over the batch's KL sequences; the
// gradient, the KL held as TRL holds it (no gradient), matches central
// finite differences; and a batch split in two gives the whole batch's KL
// sums and loss, so the step's micro-batches and workers add up to one batch.
import { beforeAll, describe, expect, it } from 'vitest';
import { tf, useBackend } from '@lorafleet/core';
import { type KtoObjective, ktoHalf, ktoKl, objectiveOf } from '../src/index.js';
import { examplesOf, ktoBatch } from './kto-fixtures.js';
import {
  build,
  expectFiniteDifferences,
  logitsOf,
  logpsFloat64,
  pairBatch,
  withLora,
} from './pair-fixtures.js';

beforeAll(async () => {
  await useBackend('cpu');
});

const CASES: KtoObjective[] = [
  { kind: 'kto', beta: 0.5 },
  { kind: 'kto', beta: 0.3, desirableWeight: 1.5, undesirableWeight: 0.7 },
  { kind: 'kto', beta: 0.5, loss: 'apo_zero_unpaired' },
];

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

describe('KTO', () => {
  it("is its formula in float64 from the two models' logits, KL included", async () => {
    const [model, base] = [build(), build()];
    await withLora(model, 0.3);
    const { batch } = ktoBatch(examplesOf(pairBatch(3, 5)));
    const logps = async (m: typeof model, half: 0 | 1) => {
      const seqs = ktoHalf(batch, half);
      return logpsFloat64(await logitsOf(m, seqs), seqs).map((p) => p.sum);
    };
    const [policy, ref, klPolicy, klRef] = await Promise.all([
      logps(model, 0),
      logps(base, 0),
      logps(model, 1),
      logps(base, 1),
    ]);
    const B = batch.batchSize;
    const kl = Math.max(0, klPolicy.reduce((a, p, i) => a + p - klRef[i]!, 0) / B);
    expect(kl).toBeGreaterThan(0);
    for (const settings of CASES) {
      const { beta, desirableWeight = 1, undesirableWeight = 1 } = settings;
      const z = settings.loss === 'apo_zero_unpaired' ? 0 : kl;
      let expected = 0;
      for (let b = 0; b < B; b++) {
        const r = policy[b]! - ref[b]!;
        expected += batch.desirable![b]
          ? desirableWeight * (1 - sigmoid(beta * (r - z)))
          : undesirableWeight * (1 - sigmoid(beta * (z - r)));
      }
      const objective = objectiveOf(settings);
      const shared = await objective.shared?.sums(model, batch);
      if (shared) expect(Math.abs(ktoKl(shared) - kl)).toBeLessThan(1e-5);
      const loss = objective.loss(model, batch, {}, shared);
      const sum = loss.sum();
      const got = (await sum.data())[0]!;
      tf.dispose(sum);
      loss.dispose();
      expect(Math.abs(got - expected), JSON.stringify(settings)).toBeLessThan(1e-5 * B);
    }
    model.dispose();
    base.dispose();
  });

  it('its gradient, the KL held fixed (TRL detaches it), matches central finite differences', async () => {
    const model = build();
    const params = await withLora(model, 0.3);
    const { batch } = ktoBatch(examplesOf(pairBatch(2, 9)));
    const theta = params.read();
    for (const settings of CASES) {
      const objective = objectiveOf(settings);
      params.write(theta);
      const shared = await objective.shared?.sums(model, batch);
      const lossAt = (values: Float32Array) => {
        params.write(values);
        const l = objective.loss(model, batch, {}, shared);
        const s = l.sum();
        const v = s.dataSync()[0]!;
        tf.dispose(s);
        l.dispose();
        return v;
      };
      params.write(theta);
      const prepared = objective.loss(model, batch, {}, shared);
      const { grads } = params.lossAndGrads(() => prepared.sum());
      prepared.dispose();
      // A step of 1e-3: along the largest coordinate the loss curves sharply (at 1e-2 the
      // difference is 4% off, converging to the gradient as the step shrinks: measured)
      expectFiniteDifferences(theta, grads, lossAt, JSON.stringify(settings), 11, 1e-3);
    }
    params.write(theta);
    model.dispose();
  });

  it("a batch split in two gives the whole batch's KL sums and, given them, its loss", async () => {
    const model = build();
    await withLora(model, 0.3);
    const { batch } = ktoBatch(examplesOf(pairBatch(3, 13)));
    const B = batch.batchSize;
    const row = batch.seqLen;
    const part = (from: number, to: number) => ({
      ids: batch.ids.subarray(from * row, to * row),
      labels: batch.labels.subarray(from * row, to * row),
      batchSize: to - from,
      seqLen: row,
      desirable: batch.desirable!.subarray(from, to),
    });
    const objective = objectiveOf(CASES[0]!);
    const whole = await objective.shared!.sums(model, batch);
    const halves = [part(0, 2), part(2, B)];
    const summed = await Promise.all(halves.map((h) => objective.shared!.sums(model, h)));
    expect(summed[0]![1]! + summed[1]![1]!).toBe(B);
    expect(Math.abs(summed[0]![0]! + summed[1]![0]! - whole[0]!)).toBeLessThan(1e-5);
    const lossOf = (b: typeof batch) => {
      const l = objective.loss(model, b, {}, whole);
      const s = l.sum();
      const v = s.dataSync()[0]!;
      tf.dispose(s);
      l.dispose();
      return v;
    };
    expect(Math.abs(lossOf(halves[0]!) + lossOf(halves[1]!) - lossOf(batch))).toBeLessThan(1e-5);
    // A row without its label is refused, not read as undesirable.
    expect(() => objective.loss(model, { ...batch, desirable: undefined }, {}, whole)).toThrow(
      "a KTO batch needs each row's label",
    );
    model.dispose();
  });
});
