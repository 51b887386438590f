// --padding through the real CLI, on prompt/completion lines far shorter
// than --seq-len: each micro-batch padded to its longest row (the default)
// trains the adapter that padding every row to --seq-len trains, on the same
// tokens, with the same held-out loss (float rounding apart); so do DPO on
// preference pairs and KTO, each half of their rows cut on its own; a resume
// must keep the checkpoint's padding. Its speed:
// test/bench/padding/run.mjs. The step's equality per family and backend:
// packages/worker/test/pad-to-longest.test.ts.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NO_DROPOUT_CONFIG,
  WORKERS_TOLERANCE,
  adapterGap,
  ensureBuilt,
  initTinyModel,
  lorafleet,
  makeTempDir,
  removeDir,
  writeJsonl,
  heldOutLoss,
} from './helpers.js';

let dir: string | undefined;
let model: string;
let data: string;

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('padding');
  model = await initTinyModel(dir, 'model', 0, NO_DROPOUT_CONFIG);
  // Rows of 11 to 20 tokens (prompt, completion, EOS) in --seq-len 32: every micro-batch is cut to 16 or 24.
  const lines = Array.from({ length: 24 }, (_, i) => ({
    prompt: `q${i}: ${'ab'.repeat(1 + (i % 3))}`,
    completion: ` ${'xyz'.repeat(1 + (i % 2))}.`,
  }));
  data = await writeJsonl(join(dir, 'pc.jsonl'), lines);
}, 300_000);

afterAll(() => removeDir(dir));

const train = (out: string, ...extra: string[]) =>
  lorafleet([
    'train',
    ...['--model', model, '--data', data, '--eval-fraction', '0.2', '--out', join(dir!, out)],
    ...['--seq-len', '32', '--steps', '6', '--batch-size', '4', '--lr', '2e-2'],
    ...['--lora-dropout', '0', '--checkpoint-every', '3', ...extra],
  ]);

/** Each step's loss and token count, from metrics.jsonl. */
async function steps(out: string): Promise<{ loss: number; tokens: number }[]> {
  const text = await readFile(join(dir!, out, 'metrics.jsonl'), 'utf8');
  return text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { loss: number; tokens: number });
}

const heldOut = (stdout: string) => heldOutLoss(stdout, 'after');

describe('train --padding', () => {
  it('longest trains what max_length trains, on the same tokens', async () => {
    const [longest, maxLength] = await Promise.all([
      train('longest'),
      train('max-length', '--padding', 'max_length'),
    ]);
    expect(longest.code, longest.stderr).toBe(0);
    expect(maxLength.code, maxLength.stderr).toBe(0);
    const [a, b] = [await steps('longest'), await steps('max-length')];
    expect(a.map((s) => s.tokens)).toEqual(b.map((s) => s.tokens));
    for (const [i, s] of a.entries()) expect(s.loss).toBeCloseTo(b[i]!.loss, 5);
    expect(heldOut(longest.stdout)).toBeCloseTo(heldOut(maxLength.stdout), 4);
    const gap = await adapterGap(
      join(dir!, 'longest', 'adapter'),
      join(dir!, 'max-length', 'adapter'),
    );
    expect(gap.largestB).toBeGreaterThan(1e-3); // it trained
    expect(gap.diff).toBeLessThan(WORKERS_TOLERANCE);
  }, 120_000);

  it('DPO and KTO: each half cut on its own trains what max_length trains', async () => {
    // Responses of 4 to 13 bytes after 6-byte prompts: halves of at most 20 tokens in --seq-len 32.
    const pairs = await writeJsonl(
      join(dir!, 'pairs.jsonl'),
      Array.from({ length: 16 }, (_, i) => ({
        prompt: `p${String(i).padStart(2, '0')}: `,
        chosen: `${'yes '.repeat(1 + (i % 3))}.`,
        rejected: `no${'!'.repeat(1 + (i % 5))}`,
      })),
    );
    const feedback = await writeJsonl(
      join(dir!, 'feedback.jsonl'),
      Array.from({ length: 16 }, (_, i) => ({
        prompt: `p${String(i).padStart(2, '0')}: `,
        completion: i % 2 ? `${'yes '.repeat(1 + (i % 3))}.` : 'no!',
        label: i % 2 === 1,
      })),
    );
    for (const [objective, file] of [
      ['dpo', pairs],
      ['kto', feedback],
    ] as const) {
      const run = (out: string, ...extra: string[]) =>
        lorafleet([
          ...['train', '--model', model, '--data', file, '--out', join(dir!, out)],
          ...['--objective', objective, '--seq-len', '32', '--steps', '4', '--batch-size', '4'],
          ...['--lr', '2e-2', ...extra],
        ]);
      const [longest, maxLength] = await Promise.all([
        run(`${objective}-longest`),
        run(`${objective}-max-length`, '--padding', 'max_length'),
      ]);
      expect(longest.code, longest.stderr).toBe(0);
      expect(maxLength.code, maxLength.stderr).toBe(0);
      const [a, b] = [await steps(`${objective}-longest`), await steps(`${objective}-max-length`)];
      for (const [i, s] of a.entries()) expect(s.loss, objective).toBeCloseTo(b[i]!.loss, 5);
      const gap = await adapterGap(
        join(dir!, `${objective}-longest`, 'adapter'),
        join(dir!, `${objective}-max-length`, 'adapter'),
      );
      expect(gap.largestB, objective).toBeGreaterThan(1e-3);
      expect(gap.diff, objective).toBeLessThan(WORKERS_TOLERANCE);
    }
  }, 120_000);

  it('a resume keeps the checkpoint padding', async () => {
    const split = await train('split', '--padding', 'max_length', '--steps', '3');
    expect(split.code, split.stderr).toBe(0);
    const resumed = await train('split', '--resume', join(dir!, 'split'));
    expect(resumed.code).toBe(2);
    expect(resumed.stderr).toContain('--padding (checkpoint "max_length", now "longest")');
  }, 120_000);
});
