// `train --objective kto` with real processes: unpaired feedback
// ({"prompt","completion","label"} lines) trains an adapter with TRL's KTO
// loss (the held-out loss starts at 0.5, where policy = reference, and
// falls); 2 workers train the adapter of 1, so the KL estimate is the global
// batch's (each worker's sums all-reduced before the gradient); `eval
// --objective kto` measures what the run measured; TRL's logs (rewards, KL,
// entropy, logits, num_tokens) are what 1 worker logs; and what KTO cannot
// use is refused. The loss itself against TRL: packages/models/test/kto-trl.test.ts.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  WORKERS_TOLERANCE,
  adapterBytes,
  adapterGap,
  lorafleet,
  metricLines,
  preferenceFixture,
  preferenceRecords,
  readJson,
  removeDir,
  writeJsonl,
} from './helpers.js';

let dir: string | undefined;
let model: string;
let examples: string;
let heldOut: string;
let pairs: string;

/** Each pair's chosen response as a desirable example, its rejected one as an undesirable one. */
const unpaired = (lines: number, offset: number) =>
  preferenceRecords(lines, offset).flatMap(({ prompt, chosen, rejected }) => [
    { prompt, completion: chosen, label: true },
    { prompt, completion: rejected, label: false },
  ]);

beforeAll(async () => {
  ({ dir, model, pairs } = await preferenceFixture('kto'));
  examples = await writeJsonl(join(dir, 'kto.jsonl'), unpaired(36, 0));
  heldOut = await writeJsonl(join(dir, 'kto-held-out.jsonl'), unpaired(8, 100));
}, 300_000);

afterAll(() => removeDir(dir));

const train = (out: string, ...extra: string[]) =>
  lorafleet([
    'train',
    ...['--model', model, '--data', examples, '--eval-data', heldOut, '--out', join(dir!, out)],
    ...['--objective', 'kto', '--beta', '0.5', '--seq-len', '24', '--steps', '12'],
    ...['--batch-size', '6', '--micro-batch-size', '2', '--lora-dropout', '0', '--lr', '2e-2'],
    ...extra,
  ]);

/** The held-out KTO loss, KL and reward margin a run printed before or after training (16 examples). */
function heldOutLine(out: string, when: 'before' | 'after') {
  const m = new RegExp(
    `eval loss ${when}: +([\\d.]+) \\(KTO loss, 16 examples; KL ([\\d.]+), margin (-?[\\d.]+)\\)`,
  ).exec(out);
  return { loss: Number(m?.[1]), kl: Number(m?.[2]), margin: Number(m?.[3]) };
}
const heldOutLoss = (out: string, when: 'before' | 'after') => heldOutLine(out, when).loss;

/** `eval --objective kto --json` of a run's adapter on `data`, as the runs train (one process). */
async function evalKto(out: string, data: string): Promise<Record<string, number>> {
  const evaluated = await lorafleet([
    'eval',
    ...['--model', model, '--adapter', join(dir!, out, 'adapter'), '--data', data],
    ...['--objective', 'kto', '--beta', '0.5', '--seq-len', '24', '--batch-size', '6', '--json'],
  ]);
  expect(evaluated.code, evaluated.stderr).toBe(0);
  return JSON.parse(evaluated.stdout) as Record<string, number>;
}

/** A run's metrics.jsonl lines. */
const metricsOf = (out: string) => metricLines(join(dir!, out));

describe('train --objective kto', () => {
  it('learns from unpaired feedback, 2 workers train the adapter of 1, eval measures what the run did', async () => {
    const [one, two] = await Promise.all([train('kto-1'), train('kto-2', '--workers', '2')]);
    expect(one.code, one.stderr).toBe(0);
    expect(two.code, two.stderr).toBe(0);
    expect(one.stdout).toContain(
      `data: ${examples}: 72 examples (36 desirable, 36 undesirable kept) -> 72 rows of 2 x 24 ` +
        '(completion | KL completion, cycled within 6)',
    );
    expect(one.stdout).toContain(
      "objective: KTO (kto loss, beta 0.5), against the base model with the adapter off, the KL estimated over each step's batch; no dropout",
    );
    expect(one.stdout).toContain('12 steps of 6 examples x 2 x 24 tokens');
    // At the start the policy is the reference: every example's loss is 1 - sigmoid(0).
    expect(heldOutLine(one.stdout, 'before')).toEqual({ loss: 0.5, kl: 0, margin: 0 });
    const after = heldOutLoss(one.stdout, 'after');
    expect(after).toBeLessThan(0.45);
    expect(heldOutLoss(two.stdout, 'after')).toBeCloseTo(after, 4);
    const gap = await adapterGap(join(dir!, 'kto-1', 'adapter'), join(dir!, 'kto-2', 'adapter'));
    expect(gap.largestB).toBeGreaterThan(1e-3);
    expect(gap.diff).toBeLessThan(WORKERS_TOLERANCE);
    expect(one.stdout).toMatch(/done: 12 steps on 1 worker in [\d.]+ s, \d+ examples\/s/);
    expect(one.stderr).toMatch(/12\/12 .* loss [\d.]+ {2}kl [\d.]+ {2}lr .* examples\/s /);
    const summary = await readJson<Record<string, unknown>>(join(dir!, 'kto-1', 'summary.json'));
    expect(summary).toMatchObject({ objective: 'kto', lossUnit: 'examples' });
    const report = await evalKto('kto-1', heldOut);
    expect(report).toMatchObject({ objective: 'kto', beta: 0.5, lossType: 'kto', examples: 16 });
    expect(report.loss).toBeCloseTo(after, 4);
    // TRL's KTO logs: the held-out ones as the run printed them; each step's in metrics.jsonl,
    // the KL over the global batch, so 2 workers log 1's.
    const late = heldOutLine(one.stdout, 'after');
    expect(late.kl).toBeGreaterThanOrEqual(0); // clamped at 0, as TRL's
    expect(late.margin).toBeGreaterThan(0); // desirable completions gained on undesirable ones
    expect(report.kl).toBeCloseTo(late.kl, 4);
    expect(report.rewardMargin).toBeCloseTo(late.margin, 4);
    expect(report.rewardMargin).toBeCloseTo(report.rewardChosen! - report.rewardRejected!, 6);
    const [m1, m2] = await Promise.all([metricsOf('kto-1'), metricsOf('kto-2')]);
    expect(m1[0]).toMatchObject({
      step: 1,
      kl: 0,
      rewardChosen: 0,
      rewardRejected: 0,
      rewardMargin: 0,
    });
    expect(m1[0]!.logpsChosen).toBeLessThan(-1);
    // A noisy estimate, clamped at 0: positive at some steps (measured: 4 of 12).
    expect(m1.some((m) => m.kl! > 0)).toBe(true);
    for (const [i, m] of m1.entries()) {
      expect(Math.abs(m2[i]!.kl! - m.kl!), `step ${m.step}`).toBeLessThan(1e-4);
      expect(Math.abs(m2[i]!.rewardMargin! - m.rewardMargin!), `step ${m.step}`).toBeLessThan(1e-3);
      // KTOTrainer's token logs over the completions, and num_tokens (the examples' prompt and
      // completion tokens, not their KL sequences'): summed by workers, so 2 log 1's.
      expect(m.entropy, `step ${m.step}`).toBeGreaterThan(0);
      for (const k of ['entropy', 'logitsChosen', 'logitsRejected'])
        expect(Math.abs(m2[i]![k]! - m[k]!), `step ${m.step}: ${k}`).toBeLessThan(1e-3);
      const added = m.numTokens! - (i === 0 ? 0 : m1[i - 1]!.numTokens!);
      expect(added, `step ${m.step}`).toBeGreaterThan(6 * 4);
      expect(added, `step ${m.step}`).toBeLessThanOrEqual(6 * 24);
      expect(m2[i]!.numTokens, `step ${m.step}`).toBe(m.numTokens);
    }
    expect(report.entropy).toBeGreaterThan(0);
    expect(report.logitsChosen).toEqual(expect.any(Number));
  });

  it("2 workers estimate the held-out KL over the whole set, from their shards' sums", async () => {
    // Desirable completions only: each one's KL completion is another desirable one, which
    // training made likelier, so the estimate is positive (measured 1.0) rather than clamped at 0.
    const desirable = await writeJsonl(
      join(dir!, 'kto-desirable.jsonl'),
      unpaired(16, 200).filter((e) => e.label),
    );
    const run = await train('kto-kl', '--workers', '2', '--eval-data', desirable);
    expect(run.code, run.stderr).toBe(0);
    const whole = await evalKto('kto-kl', desirable);
    // No undesirable example: no margin either.
    const m = /eval loss after: +([\d.]+) \(KTO loss, 16 examples; KL ([\d.]+)\)/.exec(run.stdout);
    expect(m, run.stdout).not.toBeNull();
    expect(whole.kl).toBeGreaterThan(0.2);
    expect(Number(m![2])).toBeCloseTo(whole.kl!, 4);
    expect(Number(m![1])).toBeCloseTo(whole.loss!, 4);
  });

  it('stopped at step 6 and resumed to 12 on 2 workers, gives the uninterrupted adapter bytes; a resume must keep its weights', async () => {
    const run = (out: string, steps: number, ...extra: string[]) =>
      lorafleet([
        'train',
        ...['--model', model, '--data', examples, '--out', join(dir!, out)],
        ...['--objective', 'kto', '--seq-len', '24', '--batch-size', '4', '--lr', '2e-2'],
        ...['--steps', String(steps), '--schedule', 'constant', '--checkpoint-every', '6'],
        ...['--workers', '2', ...extra],
      ]);
    const [full, split] = await Promise.all([run('resume-full', 12), run('resume-split', 6)]);
    expect(full.code, full.stderr).toBe(0);
    expect(split.code, split.stderr).toBe(0);
    const resume = ['--resume', join(dir!, 'resume-split')];
    const otherWeight = await run('resume-split', 12, ...resume, '--desirable-weight', '2');
    expect(otherWeight.code).toBe(2);
    expect(otherWeight.stderr).toContain('--desirable-weight (checkpoint 1, now 2)');
    const resumed = await run('resume-split', 12, ...resume);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(await adapterBytes(join(dir!, 'resume-split'))).toEqual(
      await adapterBytes(join(dir!, 'resume-full')),
    );
  });

  it('APO-zero (unpaired) and weights train; refuses what KTO cannot use', async () => {
    const apo = await train(
      'kto-apo',
      '--kto-loss',
      'apo_zero_unpaired',
      '--desirable-weight',
      '1.5',
    );
    expect(apo.code, apo.stderr).toBe(0);
    expect(apo.stdout).toContain(
      'objective: KTO (apo_zero_unpaired loss, beta 0.5, weights 1.5 desirable, 1 undesirable)',
    );
    // At the reference: 1.5 x 1/2 for the desirable half, 1/2 for the other.
    expect(heldOutLoss(apo.stdout, 'before')).toBe(0.625);
    expect(heldOutLoss(apo.stdout, 'after')).toBeLessThan(0.625);
    const base = ['train', '--model', model, '--objective', 'kto', '--steps', '1'];
    for (const [flags, code, says] of [
      [['--data', examples, '--batch-size', '1'], 2, "--batch-size needs 2 or more (TRL's rule)"],
      [
        ['--data', examples, '--full-finetune'],
        2,
        'KTO a full fine-tune has no adapter to turn off',
      ],
      [['--data', examples, '--dpo-loss', 'ipo'], 2, 'for --objective kto give --kto-loss'],
    ] as const) {
      const refused = await lorafleet([...base, ...flags, '--out', join(dir!, 'refused')]);
      expect(refused.code, refused.stderr).toBe(code);
      expect(refused.stderr).toContain(says);
    }
  });

  it("trains from a file of preference pairs as from its unpaired copy in TRL's order", async () => {
    // TRL's KTOTrainer unpairs a paired dataset itself: each block of 1000
    // pairs' chosen responses, then their rejected ones (test/unpair-parity.test.ts).
    const records = preferenceRecords(36, 0);
    const trlOrder = await writeJsonl(join(dir!, 'kto-trl-order.jsonl'), [
      ...records.map(({ prompt, chosen }) => ({ prompt, completion: chosen, label: true })),
      ...records.map(({ prompt, rejected }) => ({ prompt, completion: rejected, label: false })),
    ]);
    const run = (out: string, data: string) =>
      lorafleet([
        'train',
        ...['--model', model, '--data', data, '--out', join(dir!, out)],
        ...['--objective', 'kto', '--beta', '0.5', '--seq-len', '24', '--steps', '4'],
        ...['--batch-size', '6', '--micro-batch-size', '2', '--lora-dropout', '0', '--lr', '2e-2'],
      ]);
    const fromPairs = await run('kto-pairs', pairs);
    expect(fromPairs.code, fromPairs.stderr).toBe(0);
    expect(fromPairs.stdout).toMatch(
      /36 preference pairs unpaired \(TRL's KTOTrainer\) -> 72 examples \(36 desirable, 36 undesirable kept\)/,
    );
    const fromCopy = await run('kto-copy', trlOrder);
    expect(fromCopy.code, fromCopy.stderr).toBe(0);
    expect(await adapterBytes(join(dir!, 'kto-pairs'))).toEqual(
      await adapterBytes(join(dir!, 'kto-copy')),
    );
  });
});
