// `train --objective dpo` with real processes: preference pairs train an
// adapter that prefers the chosen responses (the held-out DPO loss starts at
// log 2, where policy = reference, and falls), 2 workers train the adapter of
// 1, the adapter is a PEFT folder, `eval` measures what the run measured, and
// what an objective cannot use is refused. ORPO, SimPO and CPO:
// cli-preference-reference-free.test.ts.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  WORKERS_TOLERANCE,
  adapterBytes,
  adapterGap,
  evalOf,
  lorafleet,
  preferenceFixture,
  readJson,
  removeDir,
} from './helpers.js';

let dir: string | undefined;
let model: string;
let pairs: string;
let heldOut: string;
let text: string;

beforeAll(async () => {
  ({ dir, model, pairs, heldOut, text } = await preferenceFixture('dpo'));
}, 300_000);

afterAll(() => removeDir(dir));

const train = (out: string, ...extra: string[]) =>
  lorafleet([
    'train',
    ...['--model', model, '--data', pairs, '--eval-data', heldOut, '--out', join(dir!, out)],
    ...['--objective', 'dpo', '--beta', '0.5', '--seq-len', '24', '--steps', '12'],
    ...['--batch-size', '6', '--micro-batch-size', '2', '--lora-dropout', '0', '--lr', '2e-2'],
    ...extra,
  ]);

const evalLoss = (out: string, when: 'before' | 'after') => evalOf(out, when).loss;

/** A preference run's metrics.jsonl: each step's rewards over its pairs, as it trained on them. */
async function trainRewards(out: string) {
  const text = await readFile(join(dir!, out, 'metrics.jsonl'), 'utf8');
  return text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>)
    .map(({ step, rewardAccuracy, rewardMargin, rewardChosen, rewardRejected, ...rest }) => ({
      ...{ step, accuracy: rewardAccuracy!, margin: rewardMargin! },
      ...{ chosen: rewardChosen!, rejected: rewardRejected! },
      ...{ logpsChosen: rest.logpsChosen!, logpsRejected: rest.logpsRejected! },
      // DPOTrainer's token metrics of the responses
      ...{ meanTokenAccuracy: rest.meanTokenAccuracy!, entropy: rest.entropy! },
      ...{ logitsChosen: rest.logitsChosen!, logitsRejected: rest.logitsRejected! },
      numTokens: rest.numTokens!,
    }));
}

describe('train --objective dpo', () => {
  it('learns to prefer the chosen responses, and 2 workers train the adapter of 1', async () => {
    const [one, two] = await Promise.all([
      train('dpo-1', '--eval-every', '6'),
      train('dpo-2', '--eval-every', '6', '--workers', '2'),
    ]);
    expect(one.code, one.stderr).toBe(0);
    expect(two.code, two.stderr).toBe(0);
    expect(one.stdout).toContain(
      'data: ' + pairs + ': 36 preference pairs -> 36 rows of 2 x 24 (chosen | rejected)',
    );
    expect(one.stdout).toContain(
      'objective: DPO (sigmoid loss, beta 0.5), against the base model with the adapter off; no dropout',
    );
    expect(one.stdout).toContain('12 steps of 6 pairs x 2 x 24 tokens');
    // Each worker built its step for DPO.
    const ready = `${two.stdout}${two.stderr}`.match(
      /: 36 preference pairs, \d+ trainable parameters on wasm, DPO beta 0.5; ready/g,
    );
    expect(ready).toHaveLength(2);
    // At the start the policy is the reference: every pair's loss is log 2.
    expect(evalLoss(one.stdout, 'before')).toBe(Number(Math.LN2.toFixed(4)));
    expect(evalLoss(one.stdout, 'after')).toBeLessThan(0.6);
    expect(evalLoss(two.stdout, 'after')).toBeCloseTo(evalLoss(one.stdout, 'after'), 4);
    expect(one.stdout).toMatch(/done: 12 steps on 1 worker in [\d.]+ s, \d+ pairs\/s/);
    const summary = await readJson<{ objective: string; lossUnit: string }>(
      join(dir!, 'dpo-1', 'summary.json'),
    );
    expect(summary).toMatchObject({ objective: 'dpo', lossUnit: 'pairs' });
    // The dashboard labels its throughput by the run facts' unit.
    const events = await readFile(join(dir!, 'dpo-1', 'events.jsonl'), 'utf8');
    const run = events.split('\n').find((l) => l.includes('"type":"run"'));
    expect(JSON.parse(run!).facts).toMatchObject({ lossUnit: 'pairs', batchSize: 6, seqLen: 24 });
    const evals = events
      .split('\n')
      .filter((l) => l.includes('"type":"eval"'))
      .map((l) => JSON.parse(l) as { step: number; rewardAccuracy: number });
    expect(evals.map((e) => e.step)).toEqual([0, 6, 12]); // before, --eval-every 6, after
    expect(evals[2]!.rewardAccuracy).toBeCloseTo(evalOf(one.stdout, 'after').accuracy, 4);
    const gap = await adapterGap(join(dir!, 'dpo-1', 'adapter'), join(dir!, 'dpo-2', 'adapter'));
    expect(gap.largestB).toBeGreaterThan(1e-3); // trained
    expect(gap.diff).toBeLessThan(WORKERS_TOLERANCE);
    // TRL's training reward logs, per step: from 0 at the reference, learning; 2 workers report 1's.
    const [r1, r2] = await Promise.all([trainRewards('dpo-1'), trainRewards('dpo-2')]);
    expect(r1.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(r1[0]).toMatchObject({ step: 1, accuracy: 0, margin: 0, chosen: 0, rejected: 0 });
    // TRL's logps/chosen and logps/rejected: the policy's summed log-probabilities (nats).
    expect(r1[0]!.logpsChosen).toBeLessThan(-1);
    expect(r1[0]!.logpsRejected).toBeLessThan(-1);
    const late = r1.slice(-4);
    expect(late.every((r) => r.accuracy > 0.5 && r.margin > 0)).toBe(true);
    for (const [i, r] of r1.entries()) {
      expect(r.margin).toBeCloseTo(r.chosen - r.rejected, 6);
      expect(Math.abs(r2[i]!.margin - r.margin), `step ${r.step}`).toBeLessThan(1e-3);
      expect(Math.abs(r2[i]!.logpsChosen - r.logpsChosen), `step ${r.step}`).toBeLessThan(1e-3);
      expect(Math.abs(r2[i]!.accuracy - r.accuracy), `step ${r.step}`).toBeLessThanOrEqual(1 / 6);
      // Token metrics: sums over each worker's tokens, divided by the global count.
      expect(r.meanTokenAccuracy).toBeGreaterThanOrEqual(0);
      expect(r.meanTokenAccuracy).toBeLessThanOrEqual(1);
      expect(r.entropy).toBeGreaterThan(0);
      for (const k of ['meanTokenAccuracy', 'entropy', 'logitsChosen', 'logitsRejected'] as const)
        expect(Math.abs(r2[i]![k] - r[k]), `step ${r.step}: ${k}`).toBeLessThan(1e-3);
      // TRL's num_tokens: the pairs' prompt and response tokens so far, both sequences of each.
      const added = r.numTokens - (i === 0 ? 0 : r1[i - 1]!.numTokens);
      expect(added, `step ${r.step}`).toBeGreaterThan(6 * 2 * 4);
      expect(added, `step ${r.step}`).toBeLessThanOrEqual(6 * 2 * 24);
      expect(r2[i]!.numTokens, `step ${r.step}`).toBe(r.numTokens);
    }
    expect(one.stderr).toMatch(
      /12\/12 .* loss [\d.]+ {2}reward acc [\d.]{4} {2}tok acc [\d.]{4} {2}lr /,
    );
    // --eval-every 6: TRL's eval logs in step 6's line, summed over the workers' shards as 1 worker's.
    const sixth = async (out: string) => {
      const lines = (await readFile(join(dir!, out, 'metrics.jsonl'), 'utf8')).trim().split('\n');
      return JSON.parse(lines[5]!) as Record<string, number>;
    };
    const [m1, m2] = await Promise.all([sixth('dpo-1'), sixth('dpo-2')]);
    expect(m1.evalRewardMargin).toBeCloseTo(m1.evalRewardChosen! - m1.evalRewardRejected!, 5);
    expect(m1.evalLogpsChosen).toBeLessThan(-1);
    for (const k of [
      'evalRewardAccuracy',
      'evalRewardChosen',
      'evalLogpsChosen',
      'evalLogpsRejected',
      'evalMeanTokenAccuracy',
      'evalEntropy',
      'evalLogitsChosen',
      'evalLogitsRejected',
    ])
      expect(Math.abs(m2[k]! - m1[k]!), k).toBeLessThan(1e-3 * Math.max(1, Math.abs(m1[k]!)));
    // `eval --objective dpo` measures the saved adapter as the run did, with TRL's reward metrics.
    const evaluated = await lorafleet([
      'eval',
      ...['--model', model, '--adapter', join(dir!, 'dpo-1', 'adapter'), '--data', heldOut],
      ...['--objective', 'dpo', '--beta', '0.5', '--seq-len', '24', '--json'],
    ]);
    expect(evaluated.code, evaluated.stderr).toBe(0);
    const report = JSON.parse(evaluated.stdout) as Record<string, number>;
    expect(report).toMatchObject({ objective: 'dpo', beta: 0.5, pairs: 8, rows: 8 });
    expect(report.loss).toBeCloseTo(evalLoss(one.stdout, 'after'), 4);
    expect(report.rewardAccuracy).toBeGreaterThan(0.5);
    expect(report.rewardMargin).toBeCloseTo(report.rewardChosen! - report.rewardRejected!, 6);
    expect(report.logpsChosen).toBeGreaterThan(report.logpsRejected!); // the true ends are likelier
    // DPOTrainer's token metrics: the run's last held-out evaluation's.
    const last = JSON.parse(
      (await readFile(join(dir!, 'dpo-1', 'metrics.jsonl'), 'utf8')).trim().split('\n').at(-1)!,
    ) as Record<string, number>;
    for (const k of ['meanTokenAccuracy', 'entropy', 'logitsChosen', 'logitsRejected'])
      expect(report[k], k).toBeCloseTo(last[`eval${k[0]!.toUpperCase()}${k.slice(1)}`]!, 4);
    // The run's held-out metrics (summed over its worker's shards) are the eval command's.
    for (const run of [one, two]) {
      const after = evalOf(run.stdout, 'after');
      expect(after.accuracy).toBeCloseTo(report.rewardAccuracy!, 4);
      expect(after.margin).toBeCloseTo(report.rewardMargin!, 3);
    }
    const before = evalOf(one.stdout, 'before'); // policy = reference: every reward is 0
    expect(before.accuracy).toBe(0);
    expect(Math.abs(before.margin)).toBe(0);
  });

  it('trains with IPO, label smoothing, APO-zero, BCO, DiscoPOP, f-DPO, LD-DPO, WPO, AOT and an MPO mixture, and eval measures with the same loss', async () => {
    // At the reference IPO's loss is (1 / (2 beta))^2 = 1, APO-zero's 1 - 1/2 + 1/2 = 1,
    // BCO's 2 log 2; the smoothed sigmoid's log 2; DiscoPOP's (log 2 + 1) / 2; forward KL's
    // sigmoid log 2. The mixture's sft term is the chosen responses' NLL: no fixed value.
    const atReference = {
      ipo: 1,
      cdpo: Math.LN2,
      apo: 1,
      bco: 2 * Math.LN2,
      discopop: (Math.LN2 + 1) / 2,
      fkl: Math.LN2,
      mpo: null,
      wpo: null, // log 2 times the pairs' WPO weights
      aot: Math.LN2,
    };
    for (const [name, flags, says] of [
      ['ipo', ['--dpo-loss', 'ipo'], 'ipo loss, beta 0.5'],
      ['cdpo', ['--dpo-label-smoothing', '0.1'], 'sigmoid loss, beta 0.5, label smoothing 0.1'],
      ['apo', ['--dpo-loss', 'apo_zero'], 'apo_zero loss, beta 0.5'],
      ['bco', ['--dpo-loss', 'bco_pair'], 'bco_pair loss, beta 0.5'],
      [
        'discopop',
        ['--dpo-loss', 'discopop', '--discopop-tau', '0.1'],
        'discopop loss, beta 0.5, tau 0.1',
      ],
      [
        'fkl',
        ['--f-divergence', 'forward_kl', '--ld-alpha', '0.5'],
        'sigmoid loss, beta 0.5, forward_kl, ld_alpha 0.5',
      ],
      [
        'mpo',
        ['--dpo-loss', 'sigmoid,bco_pair,sft', '--dpo-loss-weights', '0.8,0.2,1'],
        '0.8 sigmoid + 0.2 bco_pair + 1 sft loss, beta 0.5',
      ],
      ['wpo', ['--use-weighting'], 'sigmoid loss, beta 0.5, WPO weighting'],
      ['aot', ['--dpo-loss', 'aot'], 'aot loss, beta 0.5'],
    ] as const) {
      const run = await train(`dpo-${name}`, ...flags);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toContain(`objective: DPO (${says}), against the base model`);
      const before = evalOf(run.stdout, 'before').loss;
      const after = evalOf(run.stdout, 'after').loss;
      const want = atReference[name];
      if (want !== null) expect(before).toBe(Number(want.toFixed(4)));
      expect(after).toBeLessThan(before);
      const evaluated = await lorafleet([
        'eval',
        ...['--model', model, '--adapter', join(dir!, `dpo-${name}`, 'adapter'), '--data', heldOut],
        ...['--objective', 'dpo', '--beta', '0.5', '--seq-len', '24', '--json', ...flags],
        // AOT sorts the pairs of a batch: evaluated in the run's batches of 2
        ...(name === 'aot' ? ['--batch-size', '2'] : []),
      ]);
      expect(evaluated.code, evaluated.stderr).toBe(0);
      expect((JSON.parse(evaluated.stdout) as { loss: number }).loss).toBeCloseTo(after, 4);
    }
    // MPO's mixture with LD-DPO and WPO: every term and weight is a pair's own, so 2 workers
    // train the adapter of 1.
    const mixture = ['--dpo-loss', 'sigmoid,bco_pair,sft', '--dpo-loss-weights', '0.8,0.2,1'];
    const own = [...mixture, '--ld-alpha', '0.5', '--use-weighting'];
    const two = await train('dpo-mpo-2', ...own, '--workers', '2');
    const one = await train('dpo-mpo-1', ...own);
    expect(two.code, two.stderr).toBe(0);
    const gap = await adapterGap(
      join(dir!, 'dpo-mpo-1', 'adapter'),
      join(dir!, 'dpo-mpo-2', 'adapter'),
    );
    expect(gap.largestB).toBeGreaterThan(1e-3);
    expect(gap.diff).toBeLessThan(WORKERS_TOLERANCE);
    expect(evalLoss(two.stdout, 'after')).toBeCloseTo(evalLoss(one.stdout, 'after'), 4);
  });

  it('stopped at step 6 and resumed to 12, gives the uninterrupted adapter bytes; a resume must keep its beta', async () => {
    const run = (out: string, steps: number, ...extra: string[]) =>
      lorafleet([
        'train',
        ...['--model', model, '--data', pairs, '--out', join(dir!, out), '--steps', String(steps)],
        ...['--objective', 'dpo', '--seq-len', '24', '--batch-size', '4', '--lr', '2e-2'],
        ...['--schedule', 'constant', '--checkpoint-every', '6', ...extra],
      ]);
    const [full, split] = await Promise.all([run('resume-full', 12), run('resume-split', 6)]);
    expect(full.code, full.stderr).toBe(0);
    expect(split.code, split.stderr).toBe(0);
    const otherBeta = await run(
      'resume-split',
      12,
      '--resume',
      join(dir!, 'resume-split'),
      '--beta',
      '0.2',
    );
    expect(otherBeta.code).toBe(2);
    expect(otherBeta.stderr).toContain('--beta');
    const resumed = await run('resume-split', 12, '--resume', join(dir!, 'resume-split'));
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(await adapterBytes(join(dir!, 'resume-split'))).toEqual(
      await adapterBytes(join(dir!, 'resume-full')),
    );
  });

  it('from a trained adapter (--init-adapter) compares with a frozen copy of it, as TRL: log 2 at the start, 2 workers == 1, eval --reference-adapter agrees', async () => {
    const start = await train('dpo-start', '--steps', '4');
    expect(start.code, start.stderr).toBe(0);
    const adapter = join(dir!, 'dpo-start', 'adapter');
    const [one, two] = await Promise.all([
      train('dpo-further-1', '--init-adapter', adapter),
      train('dpo-further-2', '--init-adapter', adapter, '--workers', '2'),
    ]);
    expect(one.code, one.stderr).toBe(0);
    expect(two.code, two.stderr).toBe(0);
    expect(one.stdout).toContain(
      `objective: DPO (sigmoid loss, beta 0.5), against a frozen copy of the adapter it starts from (${adapter}); no dropout`,
    );
    // The trained adapter is its own reference at the start: every pair's loss is log 2.
    expect(evalLoss(start.stdout, 'after')).toBeLessThan(0.69);
    expect(evalLoss(one.stdout, 'before')).toBe(Number(Math.LN2.toFixed(4)));
    expect(evalLoss(one.stdout, 'after')).toBeLessThan(0.69);
    expect(evalLoss(two.stdout, 'after')).toBeCloseTo(evalLoss(one.stdout, 'after'), 4);
    const evaluate = async (...extra: string[]) => {
      const r = await lorafleet([
        'eval',
        ...['--model', model, '--adapter', join(dir!, 'dpo-further-1', 'adapter')],
        ...['--data', heldOut, '--objective', 'dpo', '--beta', '0.5', '--seq-len', '24', '--json'],
        ...extra,
      ]);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { loss: number }).loss;
    };
    const [against, againstBase] = await Promise.all([
      evaluate('--reference-adapter', adapter),
      evaluate(),
    ]);
    expect(against).toBeCloseTo(evalLoss(one.stdout, 'after'), 4);
    expect(Math.abs(againstBase - against)).toBeGreaterThan(1e-3); // the base is another reference
    const refused = await lorafleet([
      ...['eval', '--model', model, '--data', heldOut, '--reference-adapter', adapter],
    ]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(
      "--reference-adapter is DPO's and KTO's reference: give --objective dpo or kto",
    );
    // An adapter that trains base tensors in place (here its biases) leaves no start to copy.
    const biased = await lorafleet([
      ...['train', '--model', model, '--data', text, '--out', join(dir!, 'sft-bias')],
      ...['--steps', '1', '--seq-len', '24', '--lora-bias', 'all'],
    ]);
    expect(biased.code, biased.stderr).toBe(0);
    const fromBiased = await train(
      'dpo-from-bias',
      '--init-adapter',
      join(dir!, 'sft-bias', 'adapter'),
    );
    expect(fromBiased.code).toBe(2);
    expect(fromBiased.stderr).toContain('bias "all" trains base tensors in place');
  });

  it('refuses what its reference (the base model, adapter off) cannot be, and data of the other kind', async () => {
    const base = ['train', '--model', model, '--data', pairs, '--objective', 'dpo', '--steps', '1'];
    const refused = await Promise.all(
      [
        ['--full-finetune', 'full-finetune', 'a full fine-tune has no adapter to turn off'],
        ['--init pissa', 'init', '--init pissa rewrites the base weights into the residual'],
        ['--init olora', 'init', '--init olora rewrites the base weights into the residual'],
        ['--modules-to-save lm_head', 'modules-to-save', 'those modules train in place'],
        ['--lora-bias all', 'lora-bias', 'biases train in place'],
        ['--lora-dropout 0.1', 'lora-dropout', "trains without dropout, as TRL's trainers"],
        ['--packing pack', 'packing', 'pads each response to --seq-len, a pair per row'],
      ].map(async ([flags, name, why]) => {
        const out = join(dir!, flags!.replace(/\W+/g, '-'));
        const r = await lorafleet([...base, '--out', out, ...flags!.split(' ')]);
        expect(r.code).toBe(2);
        expect(r.stderr).toContain(
          `lorafleet train: --objective and --${name} contradict each other: DPO ${why}`,
        );
      }),
    );
    expect(refused).toHaveLength(7);
    for (const command of ['train', 'eval']) {
      const out = command === 'train' ? ['--out', join(dir!, 'completion-only')] : [];
      const r = await lorafleet([
        ...[command, '--model', model, '--data', pairs, '--objective', 'dpo'],
        ...[...out, '--no-completion-only-loss'],
      ]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(
        `${command}: --completion-only-loss configures the token loss (--objective sft); --objective dpo scores the responses only`,
      );
      const cut = await lorafleet([
        ...[command, '--model', model, '--data', pairs, '--objective', 'dpo'],
        ...[...out, '--truncation-mode', 'keep_end'],
      ]);
      expect(cut.code).toBe(2);
      expect(cut.stderr).toContain("--objective dpo keeps each sequence's start");
      const named = await lorafleet([
        ...[command, '--model', model, '--data', pairs, '--objective', 'dpo'],
        ...[...out, '--prompt-column', 'q', '--completion-column', 'a'],
      ]);
      expect(named.code).toBe(2);
      expect(named.stderr).toContain('--objective dpo reads JSONL rows by their own keys');
    }
    for (const [flag, value, objectives] of [
      ['--beta', '0.2', 'dpo, orpo, simpo, cpo or kto'],
      ['--dpo-loss', 'ipo', 'dpo'],
      ['--simpo-gamma', '0.5', 'simpo'],
      ['--cpo-loss', 'hinge', 'cpo'],
      ['--cpo-alpha', '0.5', 'cpo or simpo'],
    ]) {
      const sft = await lorafleet([
        'train',
        ...['--model', model, '--data', text, '--out', join(dir!, 'beta'), flag!, value!],
      ]);
      expect(sft.code).toBe(2);
      const first = objectives!.split(/,| or /)[0];
      expect(sft.stderr).toContain(
        `${flag} configures --objective ${objectives}; add --objective ${first}`,
      );
    }
    // DPO's loss_type option with CPO (where `--loss_type` is suggested to lead): the message names CPO's own.
    const cpoLossType = await lorafleet([
      ...['train', '--model', model, '--data', pairs, '--out', join(dir!, 'cpo-loss-type')],
      ...['--objective', 'cpo', '--dpo-loss', 'hinge', '--steps', '1'],
    ]);
    expect(cpoLossType.code).toBe(2);
    expect(cpoLossType.stderr).toContain(
      'train: --dpo-loss configures --objective dpo; for --objective cpo give --cpo-loss',
    );
    const smoothedIpo = await lorafleet([
      ...base,
      ...['--out', join(dir!, 'ipo-smoothed'), '--dpo-loss', 'ipo', '--dpo-label-smoothing', '0.1'],
    ]);
    expect(smoothedIpo.code).toBe(2);
    expect(smoothedIpo.stderr).toContain(
      "--dpo-label-smoothing is for --dpo-loss sigmoid, robust, exo_pair, aot, aot_unpaired (TRL's label_smoothing), not ipo",
    );
    // TRL's other DPO options: each contradiction named before anything runs.
    for (const [flags, says] of [
      [['--dpo-loss', 'sigmoid,dpo'], '--dpo-loss "dpo" is not one of sigmoid, ipo'],
      [
        ['--dpo-loss', 'sigmoid,sft', '--dpo-loss-weights', '1'],
        '--dpo-loss-weights needs one number per --dpo-loss type (2: sigmoid, sft), got 1',
      ],
      [
        ['--dpo-loss', 'bco_pair', '--f-divergence', 'js_divergence'],
        '--f-divergence js_divergence is for --dpo-loss sigmoid, sigmoid_norm, hinge, ipo, exo_pair, robust, discopop, sft (TRL), not bco_pair',
      ],
      [['--f-alpha', '0.3'], '--f-alpha is for --f-divergence alpha_divergence'],
      [['--discopop-tau', '0.1'], '--discopop-tau (> 0) is for --dpo-loss discopop'],
      [
        ['--dpo-loss', 'aot', '--use-weighting'],
        "--use-weighting weighs each pair's loss by its own responses, and --dpo-loss aot sorts the pairs of a micro-batch: TRL refuses them together",
      ],
      [['--cpo-label-smoothing', '0.1'], 'for --objective dpo give --dpo-label-smoothing'],
    ] as const) {
      const refused = await lorafleet([...base, '--out', join(dir!, 'refused'), ...flags]);
      expect(refused.code, flags.join(' ')).toBe(2);
      expect(refused.stderr).toContain(says);
    }
    const sftData = await lorafleet([
      'train',
      ...['--model', model, '--data', text, '--out', join(dir!, 'text-as-pairs')],
      ...['--objective', 'dpo', '--steps', '1'],
    ]);
    expect(sftData.code).toBe(1);
    expect(sftData.stderr).toContain(
      `${text}:1: expected "chosen" and "rejected" (a preference pair, "prompt" optional); "chosen" is missing`,
    );
    const pairsAsSft = await lorafleet([
      'train',
      ...['--model', model, '--data', pairs, '--out', join(dir!, 'pairs-as-sft'), '--steps', '1'],
    ]);
    expect(pairsAsSft.code).toBe(1);
    expect(pairsAsSft.stderr).toContain(
      `${pairs}:1: a preference pair ("chosen", "rejected"): train such data with --objective dpo`,
    );
  });
});
