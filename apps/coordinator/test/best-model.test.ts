// BestModel's decisions (the best evaluated step, the misses in a row, when
// --early-stopping-patience stops the run) against transformers' own code:
// test/reference/early_stopping.py drives EarlyStoppingCallback.on_evaluate
// and Trainer._determine_best_metric over the same held-out losses (the
// reference stack of scripts/reference-python.sh). The runs themselves:
// cli-best-model.test.ts.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Rng } from '@lorafleet/core';
import { referencePython } from '@lorafleet/core/testing';
import { describe, expect, it } from 'vitest';
import { BestModel } from '../src/training/best-model.js';
import { REPO_ROOT } from './helpers.js';

interface Spec {
  losses: number[];
  patience: number;
  threshold: number;
}
interface Decision {
  best: number;
  misses: number;
  stop: boolean;
}

/** Ours: one decision per evaluation at steps 1, 2, ... until the run stops. */
function ours({ losses, patience, threshold }: Spec): Decision[] {
  const best = new BestModel({ loadAtEnd: true, patience, threshold });
  const decisions: Decision[] = [];
  for (const [i, loss] of losses.entries()) {
    const stop = best.evaluated(i + 1, loss);
    decisions.push({ best: best.bestStep!.step, misses: best.missesInARow, stop });
    if (stop) break;
  }
  return decisions;
}

/** Held-out losses that fall, wander and plateau, as a run's do; some repeat exactly. */
function randomSpec(rng: Rng): Spec {
  let loss = 3;
  const losses = Array.from({ length: 12 }, () => {
    if (rng.uniform() < 0.2) return loss; // a tie: no improvement
    loss += (rng.uniform() - 0.6) * 0.1;
    return Number(loss.toFixed(4));
  });
  return {
    losses,
    patience: 1 + Math.floor(rng.uniform() * 4),
    threshold: [0, 0, 0.01, 0.03][Math.floor(rng.uniform() * 4)]!,
  };
}

describe('BestModel', () => {
  it("decides as transformers' EarlyStoppingCallback and best-metric tracking", () => {
    const rng = new Rng(7);
    const specs: Spec[] = [
      // An improvement under the threshold moves the best but counts as a miss.
      { losses: [5, 4, 4.05, 3.99, 3.995, 3.8, 3.9, 3.9, 3.9], patience: 3, threshold: 0.02 },
      { losses: [1, 1, 1], patience: 1, threshold: 0 },
      { losses: [2, 1.5, 1.6, 1.4, 1.45, 1.5, 1.3], patience: 2, threshold: 0 },
      ...Array.from({ length: 40 }, () => randomSpec(rng)),
    ];
    const printed = execFileSync(
      referencePython(),
      [join(REPO_ROOT, 'test', 'reference', 'early_stopping.py'), JSON.stringify(specs)],
      { encoding: 'utf8' },
    );
    const theirs = JSON.parse(printed.trim().split('\n').at(-1)!) as Decision[][];
    expect(theirs).toHaveLength(specs.length);
    for (const [i, spec] of specs.entries())
      expect(ours(spec), JSON.stringify(spec)).toEqual(theirs[i]);
    // The cases cover stopping, not stopping, and a best that is not the last evaluation.
    expect(theirs.filter((d) => d.at(-1)!.stop).length).toBeGreaterThan(5);
    expect(theirs.filter((d) => !d.at(-1)!.stop).length).toBeGreaterThan(5);
  }, 120_000);

  it('carries its state through a checkpoint', () => {
    const settings = { loadAtEnd: true, patience: 2, threshold: 0 };
    const whole = new BestModel(settings);
    const first = new BestModel(settings);
    for (const [step, loss] of [2, 1.5, 1.6].entries()) {
      whole.evaluated(step + 1, loss);
      first.evaluated(step + 1, loss);
    }
    const resumed = new BestModel(settings, first.state);
    expect(resumed.state).toEqual({ step: 2, evalLoss: 1.5, misses: 1 });
    expect(resumed.evaluated(4, 1.7)).toBe(true);
    expect(whole.evaluated(4, 1.7)).toBe(true);
    // The evaluation after the last step is a candidate, never a miss.
    const end = new BestModel(settings, first.state);
    end.candidate(4, 1.2);
    expect(end.state).toEqual({ step: 4, evalLoss: 1.2, misses: 1 });
  });
});
