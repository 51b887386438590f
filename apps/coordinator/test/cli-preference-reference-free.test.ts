// `train --objective orpo|simpo|cpo` with real processes: the preference
// objectives without a reference model learn to prefer the chosen responses,
// 2 workers train the adapter of 1, `eval` measures what the run measured (with
// or without an adapter), and CPO-SimPO adds the NLL term. DPO: cli-preference.test.ts.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  WORKERS_TOLERANCE,
  adapterGap,
  evalOf,
  lorafleet,
  metricLines,
  preferenceFixture,
  readJson,
  removeDir,
} from './helpers.js';

let dir: string | undefined;
let model: string;
let pairs: string;
let heldOut: string;

beforeAll(async () => {
  ({ dir, model, pairs, heldOut } = await preferenceFixture('reference-free'));
}, 300_000);

afterAll(() => removeDir(dir));

/** The largest difference between two runs' adapters (1 worker against 2). */
const largestGap = async (outA: string, outB: string) =>
  (await adapterGap(join(dir!, outA, 'adapter'), join(dir!, outB, 'adapter'))).diff;

describe('train --objective orpo, simpo and cpo (no reference model)', () => {
  const run = (objective: string, out: string, ...extra: string[]) =>
    lorafleet([
      'train',
      ...['--model', model, '--data', pairs, '--eval-data', heldOut, '--out', join(dir!, out)],
      ...['--objective', objective, '--seq-len', '24', '--steps', '12', '--batch-size', '6'],
      // LoRA's default dropout (0.05) is not drawn: only an explicit one is refused.
      ...['--micro-batch-size', '2', '--lr', '2e-2', ...extra],
    ]);
  const evaluate = (objective: string, ...extra: string[]) =>
    lorafleet([
      'eval',
      ...['--model', model, '--data', heldOut, '--objective', objective, '--seq-len', '24'],
      ...['--json', ...extra],
    ]);

  it('ORPO learns to prefer the chosen responses, 2 workers train the adapter of 1, eval measures what the run did', async () => {
    const [one, two] = await Promise.all([
      // An evaluation at the last step, in metrics.jsonl too (the one after training reuses it)
      run('orpo', 'orpo-1', '--beta', '0.5', '--eval-every', '12'),
      run('orpo', 'orpo-2', '--beta', '0.5', '--eval-every', '12', '--workers', '2'),
    ]);
    expect(one.code, one.stderr).toBe(0);
    expect(two.code, two.stderr).toBe(0);
    expect(one.stdout).toContain(
      "objective: ORPO (beta 0.5), the chosen prompt and response's NLL plus beta x the odds-ratio loss, no reference model; no dropout",
    );
    const ready = `${two.stdout}${two.stderr}`.match(/, ORPO beta 0.5; ready/g);
    expect(ready).toHaveLength(2);
    const [before, after] = [
      evalOf(one.stdout, 'before', 'ORPO'),
      evalOf(one.stdout, 'after', 'ORPO'),
    ];
    expect(after.loss).toBeLessThan(before.loss);
    expect(after.margin).toBeGreaterThan(before.margin);
    expect(evalOf(two.stdout, 'after', 'ORPO').loss).toBeCloseTo(after.loss, 4);
    const summary = await readJson<{ objective: string }>(join(dir!, 'orpo-1', 'summary.json'));
    expect(summary).toMatchObject({ objective: 'orpo', lossUnit: 'pairs' });
    expect(await largestGap('orpo-1', 'orpo-2')).toBeLessThan(WORKERS_TOLERANCE);
    // Without a reference, eval measures a model with or without an adapter: the base model
    // is what the run measured before training (B = 0), the adapter what it measured after.
    const [base, adapted] = await Promise.all([
      evaluate('orpo', '--beta', '0.5'),
      evaluate('orpo', '--beta', '0.5', '--adapter', join(dir!, 'orpo-1', 'adapter')),
    ]);
    expect(base.code, base.stderr).toBe(0);
    expect(adapted.code, adapted.stderr).toBe(0);
    const [b0, a1] = [base, adapted].map((r) => JSON.parse(r.stdout) as Record<string, number>);
    expect(b0).toMatchObject({ objective: 'orpo', beta: 0.5, pairs: 8, adaptedModules: 0 });
    expect(b0!.loss).toBeCloseTo(before.loss, 4);
    expect(a1!.loss).toBeCloseTo(after.loss, 4);
    expect(a1!.rewardAccuracy).toBeCloseTo(after.accuracy, 4);
    expect(a1!.rewardMargin).toBeCloseTo(after.margin, 3);
    // ORPOTrainer's nll_loss, log_odds_ratio and log_odds_chosen: the loss is the NLL minus
    // beta x the mean log sigmoid of the log odds ratio, which grows as it learns.
    for (const e of [b0!, a1!]) expect(e.loss).toBeCloseTo(e.nllLoss! - 0.5 * e.logOddsRatio!, 5);
    expect(a1!.logOddsChosen).toBeGreaterThan(b0!.logOddsChosen!);
    // Each step's, in training, and the evaluations' (eval_ prefixed); 2 workers log 1's.
    const [m1, m2] = await Promise.all(['orpo-1', 'orpo-2'].map((o) => metricLines(join(dir!, o))));
    const names = ['loss', 'nllLoss', 'logOddsRatio', 'logOddsChosen'];
    m1!.forEach((line, i) => {
      for (const name of names) expect(m2![i]![name], name).toBeCloseTo(line[name]!, 4);
      expect(line.loss).toBeCloseTo(line.nllLoss! - 0.5 * line.logOddsRatio!, 5);
    });
    expect(m1!.at(-1)!.evalNllLoss).toBeCloseTo(a1!.nllLoss!, 4);
    expect(m1!.at(-1)!.evalLogOddsChosen).toBeCloseTo(a1!.logOddsChosen!, 4);
  });

  it('SimPO trains with its margin, AlphaPO too, a full fine-tune too (nothing to keep for a reference)', async () => {
    const [simpo, full, alphapo] = await Promise.all([
      run('simpo', 'simpo', '--simpo-gamma', '0.5'),
      run('orpo', 'orpo-full', '--full-finetune', '--lr', '1e-3'),
      run('simpo', 'alphapo', '--alphapo-alpha', '0.25'),
    ]);
    // AlphaPO (TRL's loss_type alphapo): SimPO on (1 - p^-alpha) / alpha, trained and measured alike.
    expect(alphapo.code, alphapo.stderr).toBe(0);
    expect(alphapo.stdout).toContain('objective: SimPO (beta 2, gamma 1, AlphaPO alpha 0.25)');
    const alphapoAfter = evalOf(alphapo.stdout, 'after', 'SimPO');
    expect(alphapoAfter.loss).toBeLessThan(evalOf(alphapo.stdout, 'before', 'SimPO').loss);
    const shaped = await evaluate(
      'simpo',
      ...['--alphapo-alpha', '0.25', '--adapter', join(dir!, 'alphapo', 'adapter')],
    );
    expect(shaped.code, shaped.stderr).toBe(0);
    const shapedReport = JSON.parse(shaped.stdout) as Record<string, number>;
    expect(shapedReport).toMatchObject({ objective: 'simpo', alphaPo: 0.25 });
    expect(shapedReport.loss).toBeCloseTo(alphapoAfter.loss, 4);
    expect(simpo.code, simpo.stderr).toBe(0);
    expect(simpo.stdout).toContain(
      'objective: SimPO (beta 2, gamma 0.5), length-averaged log-probabilities, no reference model; no dropout',
    );
    const [before, after] = [
      evalOf(simpo.stdout, 'before', 'SimPO'),
      evalOf(simpo.stdout, 'after', 'SimPO'),
    ];
    expect(after.loss).toBeLessThan(before.loss);
    expect(after.accuracy).toBeGreaterThan(0.5);
    const evaluated = await evaluate(
      'simpo',
      ...['--simpo-gamma', '0.5', '--adapter', join(dir!, 'simpo', 'adapter')],
    );
    expect(evaluated.code, evaluated.stderr).toBe(0);
    const report = JSON.parse(evaluated.stdout) as Record<string, number>;
    expect(report).toMatchObject({ objective: 'simpo', beta: 2, gamma: 0.5 });
    expect(report.loss).toBeCloseTo(after.loss, 4);
    expect(full.code, full.stderr).toBe(0);
    const fullAfter = evalOf(full.stdout, 'after', 'ORPO');
    expect(fullAfter.loss).toBeLessThan(evalOf(full.stdout, 'before', 'ORPO').loss);
    const stray = await evaluate('dpo', '--simpo-gamma', '0.5');
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain(
      'eval: --simpo-gamma configures --objective simpo; add --objective simpo',
    );
    const dropout = await lorafleet([
      'train',
      ...['--model', model, '--data', pairs, '--out', join(dir!, 'simpo-dropout')],
      ...['--objective', 'simpo', '--lora-dropout', '0.1', '--steps', '1'],
    ]);
    expect(dropout.code).toBe(2);
    expect(dropout.stderr).toContain(
      "--objective and --lora-dropout contradict each other: SimPO trains without dropout, as TRL's trainers",
    );
  });

  it('CPO learns to prefer the chosen responses, 2 workers train the adapter of 1, eval measures what the run did; CPO-SimPO adds the NLL', async () => {
    const [one, two, cpoSimpo] = await Promise.all([
      run('cpo', 'cpo-1', '--beta', '0.05'),
      run('cpo', 'cpo-2', '--beta', '0.05', '--workers', '2'),
      run('simpo', 'cpo-simpo', '--cpo-alpha', '0.5', '--steps', '1'),
    ]);
    expect(one.code, one.stderr).toBe(0);
    expect(two.code, two.stderr).toBe(0);
    expect(one.stdout).toContain(
      "objective: CPO (sigmoid loss, beta 0.05, alpha 1), DPO's loss without a reference model plus alpha x the chosen response's NLL; no dropout",
    );
    const [before, after] = [
      evalOf(one.stdout, 'before', 'CPO'),
      evalOf(one.stdout, 'after', 'CPO'),
    ];
    expect(after.loss).toBeLessThan(before.loss);
    expect(after.margin).toBeGreaterThan(before.margin);
    expect(evalOf(two.stdout, 'after', 'CPO').loss).toBeCloseTo(after.loss, 4);
    expect(await largestGap('cpo-1', 'cpo-2')).toBeLessThan(WORKERS_TOLERANCE);
    const evaluated = await evaluate(
      'cpo',
      ...['--beta', '0.05', '--adapter', join(dir!, 'cpo-1', 'adapter')],
    );
    expect(evaluated.code, evaluated.stderr).toBe(0);
    const report = JSON.parse(evaluated.stdout) as Record<string, number>;
    expect(report).toMatchObject({ objective: 'cpo', beta: 0.05, lossType: 'sigmoid', alpha: 1 });
    expect(report.loss).toBeCloseTo(after.loss, 4);
    expect(report.rewardAccuracy).toBeCloseTo(after.accuracy, 4);
    // CPO-SimPO: before training, SimPO's held-out loss plus 0.5 x the chosen responses' mean NLL.
    expect(cpoSimpo.code, cpoSimpo.stderr).toBe(0);
    expect(cpoSimpo.stdout).toContain('objective: SimPO (beta 2, gamma 1, alpha 0.5 (CPO-SimPO))');
    const [simpoBase, nll] = await Promise.all([
      evaluate('simpo'),
      lorafleet([
        'eval',
        ...['--model', model, '--data', heldOut, '--seq-len', '24', '--objective', 'cpo'],
        ...['--beta', '1e-9', '--cpo-alpha', '1', '--json'],
      ]),
    ]);
    // CPO at a vanishing beta is log 2 plus alpha x the chosen responses' mean NLL, its nll_loss.
    const cpoAtZero = JSON.parse(nll.stdout) as { loss: number; nllLoss: number };
    const chosenNll = cpoAtZero.loss - Math.LN2;
    expect(cpoAtZero.nllLoss).toBeCloseTo(chosenNll, 5);
    expect(report.nllLoss).toBeGreaterThan(0);
    // SimPO without an NLL weight has no NLL term to log (TRL logs 0.0 for it).
    expect(JSON.parse(simpoBase.stdout)).not.toHaveProperty('nllLoss');
    const simpoLoss = (JSON.parse(simpoBase.stdout) as { loss: number }).loss;
    expect(evalOf(cpoSimpo.stdout, 'before', 'SimPO').loss).toBeCloseTo(
      simpoLoss + 0.5 * chosenNll,
      3,
    );
    // TRL's label_smoothing e: (1 - e) softplus(-z) + e softplus(z) = softplus(-z) + e z, and
    // z's mean over the pairs is the reward margin minus gamma (1).
    const smoothed = await evaluate('simpo', '--cpo-label-smoothing', '0.2');
    expect(smoothed.code, smoothed.stderr).toBe(0);
    const plain = JSON.parse(simpoBase.stdout) as { loss: number; rewardMargin: number };
    const report2 = JSON.parse(smoothed.stdout) as { loss: number; labelSmoothing: number };
    expect(report2.labelSmoothing).toBe(0.2);
    expect(report2.loss).toBeCloseTo(plain.loss + 0.2 * (plain.rewardMargin - 1), 4);
  });
});
