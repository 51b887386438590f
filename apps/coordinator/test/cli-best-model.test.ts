// `train --load-best-model-at-end` and `--early-stopping-patience` with real
// processes. The held-out text is unlike the training text and the lr high,
// so the held-out loss falls, then rises: the saved adapter is the checkpoint
// of the lowest evaluation (rank 0 of 2 workers writes it from that
// checkpoint), `eval` measures that loss on it, and the checkpoint outlives
// --keep-checkpoints 1. Early stopping stops where transformers'
// EarlyStoppingCallback would (its decisions: best-model.test.ts), and a run
// stopped and resumed stops at the same step with the same adapter bytes.
// A DPO run can choose by its held-out reward accuracy instead.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PLATEAU_DEFAULTS, initialPlateau, plateauLr, plateauStep } from '@lorafleet/core';
import {
  adapterBytes,
  checkpointDir,
  evalJson,
  lorafleet,
  numberedPatternRecords,
  preferenceRecords,
  readJson,
  removeDir,
  writeJsonl,
  trainFixture,
} from './helpers.js';

let dir: string | undefined;
let model: string;
let data: string;
let heldOut: string;

beforeAll(async () => {
  ({ dir, model, data } = await trainFixture('best-model', numberedPatternRecords(40)));
  heldOut = await writeJsonl(
    join(dir, 'held-out.jsonl'),
    Array.from({ length: 8 }, (_, i) => ({
      text: `the quick brown fox ${i} jumps over the lazy dog again.`,
    })),
  );
}, 300_000);

afterAll(() => removeDir(dir));

const train = (out: string, ...extra: string[]) =>
  lorafleet([
    'train',
    ...['--model', model, '--data', data, '--eval-data', heldOut, '--out', join(dir!, out)],
    ...['--seq-len', '32', '--batch-size', '4', '--lr', '5e-2', '--lora-dropout', '0'],
    ...['--eval-every', '2', ...extra],
  ]);

/** Each evaluation's step and held-out loss, from metrics.jsonl. */
async function evaluations(
  out: string,
): Promise<{ step: number; loss: number; accuracy: number }[]> {
  const lines = (await readFile(join(dir!, out, 'metrics.jsonl'), 'utf8')).trim().split('\n');
  return lines
    .map(
      (l) => JSON.parse(l) as { step: number; evalLoss?: number; evalMeanTokenAccuracy?: number },
    )
    .filter((m) => m.evalLoss !== undefined)
    .map((m) => ({ step: m.step, loss: m.evalLoss!, accuracy: m.evalMeanTokenAccuracy! }));
}

interface Summary {
  steps: number;
  stoppedEarly: boolean;
  best: { metric: string; step: number; value: number };
  savedStep: number;
}

describe('train --load-best-model-at-end', () => {
  it("saves the lowest held-out loss's checkpoint (2 workers), which eval measures and pruning spares", async () => {
    const run = await train(
      'best',
      ...['--steps', '12', '--workers', '2', '--keep-checkpoints', '1'],
      '--load-best-model-at-end',
    );
    expect(run.code, run.stderr).toBe(0);
    const evals = await evaluations('best');
    expect(evals.map((e) => e.step)).toEqual([2, 4, 6, 8, 10, 12]);
    const lowest = evals.reduce((a, b) => (b.loss < a.loss ? b : a));
    // The case this test is for: the held-out loss rose after its lowest point.
    expect(lowest.step).toBeLessThan(12);
    expect(evals.at(-1)!.loss).toBeGreaterThan(lowest.loss + 1e-3);
    const summary = await readJson<Summary>(join(dir!, 'best', 'summary.json'));
    expect(summary).toMatchObject({ steps: 12, stoppedEarly: false, savedStep: lowest.step });
    expect(summary.best).toEqual({ metric: 'loss', step: lowest.step, value: lowest.loss });
    expect(run.stdout).toContain(
      `saved adapter (PEFT layout) of step ${lowest.step}, the best evaluated (loss ${lowest.loss.toFixed(4)})`,
    );
    const best = checkpointDir(join(dir!, 'best'), lowest.step);
    expect(await readdir(join(dir!, 'best', 'checkpoints'))).toEqual([
      `step-${String(lowest.step).padStart(6, '0')}`,
      'step-000012',
    ]);
    expect(await adapterBytes(join(dir!, 'best'))).toEqual(
      await readFile(join(best, 'adapter_model.safetensors')),
    );
    const measured = await evalJson([
      ...['--model', model, '--adapter', join(dir!, 'best', 'adapter'), '--data', heldOut],
      ...['--seq-len', '32'],
    ]);
    expect(measured.loss).toBeCloseTo(lowest.loss, 5);
    // Without the option, the last step's adapter.
    const last = await train('last', '--steps', '12', '--workers', '2');
    expect(last.code, last.stderr).toBe(0);
    expect(await adapterBytes(join(dir!, 'last'))).not.toEqual(
      await adapterBytes(join(dir!, 'best')),
    );
  }, 300_000);

  it('--early-stopping-patience stops there; stopped at step 8 and resumed, it stops at the same step with the same bytes', async () => {
    const stopping = ['--schedule', 'constant', '--early-stopping-patience', '2'];
    const early = (out: string, steps: number, ...extra: string[]) =>
      train(out, '--steps', String(steps), ...stopping, '--load-best-model-at-end', ...extra);
    const [whole, split] = await Promise.all([early('whole', 12), early('split', 8)]);
    expect(whole.code, whole.stderr).toBe(0);
    expect(split.code, split.stderr).toBe(0);
    const evals = await evaluations('whole');
    // Two evaluations in a row above the lowest: the run stops at the second.
    const lowest = evals.reduce((a, b) => (b.loss < a.loss ? b : a));
    const stop = lowest.step + 4;
    expect(stop).toBeLessThan(12);
    expect(evals.at(-1)!.step).toBe(stop);
    expect(whole.stdout).toContain(
      `stopped early at step ${stop} of 12: 2 evaluations in a row did not improve on the best held-out loss ` +
        `(${lowest.loss.toFixed(4)}, step ${lowest.step}) (--early-stopping-patience)`,
    );
    expect(whole.stdout).toMatch(new RegExp(`done \\(stopped early\\): ${stop} steps`));
    expect(await readJson<Summary>(join(dir!, 'whole', 'summary.json'))).toMatchObject({
      steps: stop,
      stoppedEarly: true,
      savedStep: lowest.step,
    });
    const resumed = await early('split', 12, '--resume', join(dir!, 'split'));
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toContain(`stopped early at step ${stop} of 12`);
    expect(await adapterBytes(join(dir!, 'split'))).toEqual(
      await adapterBytes(join(dir!, 'whole')),
    );
    // Patience alone stops the run too, and keeps the last step's adapter (with a warning).
    const alone = await train('alone', '--steps', '12', ...stopping);
    expect(alone.code, alone.stderr).toBe(0);
    expect(alone.stderr).toContain(
      "warning: --early-stopping-patience without --load-best-model-at-end: the adapter saved is the last step's",
    );
    expect(await readJson<Summary>(join(dir!, 'alone', 'summary.json'))).toMatchObject({
      steps: stop,
      savedStep: stop,
    });
  }, 300_000);

  it('--metric-for-best-model rewards/accuracies: a DPO run saves its first step of the highest held-out accuracy', async () => {
    const pairs = await writeJsonl(join(dir!, 'pairs.jsonl'), preferenceRecords(36, 0));
    const heldPairs = await writeJsonl(join(dir!, 'held-pairs.jsonl'), preferenceRecords(8, 100));
    const run = await lorafleet([
      'train',
      ...['--model', model, '--data', pairs, '--eval-data', heldPairs, '--out', join(dir!, 'dpo')],
      ...['--objective', 'dpo', '--seq-len', '24', '--steps', '12', '--batch-size', '4'],
      ...['--lr', '2e-2', '--eval-every', '2', '--load-best-model-at-end'],
      ...['--metric-for-best-model', 'eval_rewards/accuracies'], // transformers' spelling
    ]);
    expect(run.code, run.stderr).toBe(0);
    const lines = (await readFile(join(dir!, 'dpo', 'metrics.jsonl'), 'utf8')).trim().split('\n');
    const evals = lines
      .map((l) => JSON.parse(l) as { step: number; evalLoss?: number; evalRewardAccuracy?: number })
      .filter((m) => m.evalRewardAccuracy !== undefined);
    const highest = Math.max(...evals.map((e) => e.evalRewardAccuracy!));
    const first = evals.find((e) => e.evalRewardAccuracy === highest)!;
    // The accuracy peaks before the loss bottoms out: the metric chose another step.
    const lowestLoss = evals.reduce((a, b) => (b.evalLoss! < a.evalLoss! ? b : a));
    expect(first.step).toBeLessThan(lowestLoss.step);
    expect(await readJson<Summary>(join(dir!, 'dpo', 'summary.json'))).toMatchObject({
      best: { metric: 'rewards/accuracies', step: first.step, value: highest },
      savedStep: first.step,
    });
    expect(await adapterBytes(join(dir!, 'dpo'))).toEqual(
      await readFile(
        join(checkpointDir(join(dir!, 'dpo'), first.step), 'adapter_model.safetensors'),
      ),
    );
  }, 120_000);

  it('--schedule reduce_lr_on_plateau: the LR falls after evaluations that do not improve, in the workers too; stopped and resumed, the same bytes', async () => {
    // threshold 0.5 (relative): every evaluation after the first fails to improve enough.
    const kwargs = { patience: 0, factor: 0.5, threshold: 0.5 };
    const plateau = (out: string, steps: number, factor: number, ...extra: string[]) =>
      train(
        ...[out, '--steps', String(steps), '--workers', '2', '--checkpoint-every', '2'],
        ...['--schedule', 'reduce_lr_on_plateau'],
        ...['--lr-scheduler-kwargs', JSON.stringify({ ...kwargs, factor }), ...extra],
      );
    const [half, tenth, split] = await Promise.all([
      plateau('plateau', 12, 0.5),
      plateau('plateau-tenth', 6, 0.1),
      plateau('plateau-split', 6, 0.5),
    ]);
    for (const r of [half, tenth, split]) expect(r.code, r.stderr).toBe(0);
    expect(half.stdout).toContain(
      'optimizer: AdamW lr 0.05 (reduce_lr_on_plateau on evaluations: x0.5 after 1 without improvement)',
    );
    expect(half.stdout).toContain(
      'lr reduced to 2.500e-2 after the evaluation at step 4: its loss stopped improving',
    );
    // Each step's LR is core's plateau replayed over the logged held-out losses.
    type Line = { step: number; loss: number; lr: number; evalLoss?: number };
    const lines = async (out: string) =>
      (await readFile(join(dir!, out, 'metrics.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Line);
    const settings = { ...PLATEAU_DEFAULTS, ...kwargs };
    let state = initialPlateau(settings);
    const logged = await lines('plateau');
    for (const m of logged) {
      expect(m.lr, `step ${m.step}`).toBe(plateauLr(settings, 0.05, state.reductions));
      if (m.evalLoss !== undefined) state = plateauStep(settings, state, m.evalLoss, 0.05);
    }
    expect(state.reductions).toBe(5); // at steps 4, 6, 8, 10 and 12
    // The workers take the LR: a factor of 0.1 trains as 0.5 until the first reduction (step 5's
    // update), then otherwise.
    const other = await lines('plateau-tenth');
    expect(other.slice(0, 5).map((m) => m.loss)).toEqual(logged.slice(0, 5).map((m) => m.loss));
    expect(other[5]!.loss).not.toBe(logged[5]!.loss);
    // Stopped at step 6 and resumed: the checkpoint's plateau state continues, to the same bytes.
    const resumed = await plateau(
      'plateau-split',
      12,
      0.5,
      '--resume',
      join(dir!, 'plateau-split'),
    );
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(await adapterBytes(join(dir!, 'plateau-split'))).toEqual(
      await adapterBytes(join(dir!, 'plateau')),
    );
  }, 300_000);

  it("--eval-strategy and --save-strategy epoch: an evaluation and a checkpoint at every epoch's end", async () => {
    // train() gives --eval-every; the epoch strategy takes its place.
    const run = await lorafleet([
      ...['train', '--model', model, '--data', data, '--eval-data', heldOut],
      ...['--out', join(dir!, 'epochs'), '--seq-len', '32', '--batch-size', '4', '--lr', '5e-2'],
      ...['--epochs', '3', '--eval-strategy', 'epoch', '--save-strategy', 'epoch'],
      ...['--load-best-model-at-end', '--metric-for-best-model', 'eval_mean_token_accuracy'],
    ]);
    expect(run.code, run.stderr).toBe(0);
    const steps = Number(
      /(\d+) steps of 4 rows x 32 tokens \(3\.00 epochs\)/.exec(run.stdout)?.[1],
    );
    const epoch = steps / 3;
    expect(Number.isInteger(epoch) && epoch > 1).toBe(true);
    const evals = await evaluations('epochs');
    expect(evals.map((e) => e.step)).toEqual([epoch, 2 * epoch, 3 * epoch]);
    expect((await readdir(join(dir!, 'epochs', 'checkpoints'))).sort()).toEqual(
      [epoch, 2 * epoch, 3 * epoch].map((step) => `step-${String(step).padStart(6, '0')}`),
    );
    // Chosen by TRL's eval_mean_token_accuracy (higher is better): the first evaluation of the highest.
    const highest = Math.max(...evals.map((e) => e.accuracy));
    expect(highest).toBeGreaterThan(0);
    const chosen = evals.find((e) => e.accuracy === highest)!.step;
    const summary = await readJson<Summary>(join(dir!, 'epochs', 'summary.json'));
    expect(summary).toMatchObject({
      best: { metric: 'mean_token_accuracy', step: chosen, value: highest },
      savedStep: chosen,
    });
    // The strategy replaces the step interval: giving both is refused.
    const both = await train('both', '--eval-strategy', 'epoch');
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--eval-every and --eval-strategy contradict each other');
  }, 300_000);

  it('refuses what cannot choose a best checkpoint', async () => {
    for (const [flags, says] of [
      [['--steps', '4', '--eval-every', '0', '--load-best-model-at-end'], 'needs --eval-every N'],
      [
        ['--steps', '4', '--load-best-model-at-end', '--checkpoint-every', '3'],
        '--eval-every 2 is not a multiple of --checkpoint-every 3',
      ],
      [
        ['--steps', '4', '--early-stopping-threshold', '0.1'],
        '--early-stopping-threshold needs --early-stopping-patience',
      ],
      [
        [
          '--steps',
          '4',
          '--load-best-model-at-end',
          '--metric-for-best-model',
          'rewards/accuracies',
        ],
        '--metric-for-best-model rewards/accuracies is not measured by --objective sft: give one of loss, mean_token_accuracy',
      ],
      [
        ['--steps', '4', '--load-best-model-at-end', '--metric-for-best-model', 'bleu'],
        '--metric-for-best-model bleu: give loss, rewards/accuracies, rewards/margins, mean_token_accuracy',
      ],
      [
        ['--steps', '4', '--metric-for-best-model', 'loss'],
        '--metric-for-best-model needs --load-best-model-at-end, --early-stopping-patience or --schedule reduce_lr_on_plateau',
      ],
    ] as const) {
      const refused = await train('refused', ...flags);
      expect(refused.code, refused.stderr).toBe(2);
      expect(refused.stderr).toContain(says);
    }
    const full = await lorafleet([
      'train',
      ...['--model', model, '--data', data, '--eval-data', heldOut, '--out', join(dir!, 'full')],
      ...['--steps', '4', '--eval-every', '2', '--load-best-model-at-end', '--full-finetune'],
    ]);
    expect(full.code, full.stderr).toBe(2);
    expect(full.stderr).toContain('a full fine-tune writes no checkpoints to choose from');
  }, 120_000);
});
