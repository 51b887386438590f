// BestModel's decisions (the best evaluated step, the misses in a row, when
// --early-stopping-patience stops the run) against transformers' own code:
// test/reference/early_stopping.py drives EarlyStoppingCallback.on_evaluate
// and Trainer._determine_best_metric over the same held-out values, a loss
// (lower is better) or a reward accuracy (higher is better; the reference
// stack of scripts/reference-python.sh). The runs themselves:
// cli-best-model.test.ts.
import { Rng } from '@lorafleet/core';
import { referenceJson } from '@lorafleet/core/testing';
import { describe, expect, it } from 'vitest';
import { BestModel } from '../src/training/best-model.js';

interface Spec {
  values: number[];
  /** rewards/accuracies (higher is better), else the loss. */
  greater: boolean;
  patience: number;
  threshold: number;
}
interface Decision {
  best: number;
  misses: number;
  stop: boolean;
}

/** Ours: one decision per evaluation at steps 1, 2, ... until the run stops. */
function ours({ values, greater, patience, threshold }: Spec): Decision[] {
  const metric = greater ? 'rewards/accuracies' : 'loss';
  const best = new BestModel({ metric, loadAtEnd: true, patience, threshold });
  const decisions: Decision[] = [];
  for (const [i, value] of values.entries()) {
    const e = { loss: greater ? 0 : value, pairs: { rewardAccuracy: value, rewardMargin: 0 } };
    const stop = best.evaluated(i + 1, e);
    decisions.push({ best: best.bestStep!.step, misses: best.missesInARow, stop });
    if (stop) break;
  }
  return decisions;
}

/** Held-out values that improve, wander and plateau, as a run's do; some repeat exactly. */
function randomSpec(rng: Rng, greater: boolean): Spec {
  let value = greater ? 0.5 : 3;
  const trend = 0.2 + 0.3 * rng.uniform(); // how steadily it improves
  const values = Array.from({ length: 12 }, () => {
    if (rng.uniform() < 0.15) return value; // a tie: no improvement
    value += (greater ? 1 : -1) * (rng.uniform() - 1 + trend + 0.5) * 0.1;
    return Number(value.toFixed(4));
  });
  return {
    values,
    greater,
    patience: 1 + Math.floor(rng.uniform() * 4),
    threshold: [0, 0, 0.01, 0.03][Math.floor(rng.uniform() * 4)]!,
  };
}

describe('BestModel', () => {
  it("decides as transformers' EarlyStoppingCallback and best-metric tracking", () => {
    const rng = new Rng(7);
    const specs: Spec[] = [
      // An improvement under the threshold moves the best but counts as a miss.
      {
        values: [5, 4, 4.05, 3.99, 3.995, 3.8, 3.9, 3.9, 3.9],
        greater: false,
        patience: 3,
        threshold: 0.02,
      },
      { values: [1, 1, 1], greater: false, patience: 1, threshold: 0 },
      { values: [2, 1.5, 1.6, 1.4, 1.45, 1.5, 1.3], greater: false, patience: 2, threshold: 0 },
      {
        values: [0.5, 0.75, 0.625, 0.76, 0.875, 0.875],
        greater: true,
        patience: 2,
        threshold: 0.05,
      },
      ...Array.from({ length: 40 }, (_, i) => randomSpec(rng, i % 2 === 1)),
    ];
    const theirs = referenceJson<Decision[][]>('early_stopping', specs);
    expect(theirs).toHaveLength(specs.length);
    for (const [i, spec] of specs.entries())
      expect(ours(spec), JSON.stringify(spec)).toEqual(theirs[i]);
    // The cases cover stopping and not stopping, in both directions.
    const stopped = theirs.map((d) => d.at(-1)!.stop);
    const count = (greater: boolean, stop: boolean) =>
      specs.filter((s, i) => s.greater === greater && stopped[i] === stop).length;
    for (const greater of [false, true])
      for (const stop of [false, true])
        expect(count(greater, stop), `${greater} ${stop}`).toBeGreaterThan(2);
  }, 120_000);

  it('carries its state through a checkpoint', () => {
    const settings = { metric: 'loss' as const, loadAtEnd: true, patience: 2, threshold: 0 };
    const whole = new BestModel(settings);
    const first = new BestModel(settings);
    for (const [step, loss] of [2, 1.5, 1.6].entries()) {
      whole.evaluated(step + 1, { loss });
      first.evaluated(step + 1, { loss });
    }
    const resumed = new BestModel(settings, first.state);
    expect(resumed.state).toEqual({ metric: 'loss', step: 2, value: 1.5, misses: 1 });
    expect(resumed.evaluated(4, { loss: 1.7 })).toBe(true);
    expect(whole.evaluated(4, { loss: 1.7 })).toBe(true);
    // The evaluation after the last step is a candidate, never a miss.
    const end = new BestModel(settings, first.state);
    end.candidate(4, { loss: 1.2 });
    expect(end.state).toEqual({ metric: 'loss', step: 4, value: 1.2, misses: 1 });
    // A checkpoint that chose by another metric is set aside, saying so.
    const said: string[] = [];
    const other = new BestModel({ ...settings, metric: 'rewards/margins' }, first.state, (l) =>
      said.push(l),
    );
    expect(other.state).toBeUndefined();
    expect(said).toEqual([
      'the checkpoint chose by loss, this run by rewards/margins: the best model and early stopping start over from here',
    ]);
    // KTO without both kinds of held-out example has no margin to compare: a clear error.
    expect(() => other.evaluated(2, { loss: 1, kto: {} })).toThrow(
      '--metric-for-best-model rewards/margins: the evaluation at step 2 has none',
    );
  });
});
