// --packing-strategy through the real CLI: best-fit packing (bfd) puts
// several prompt/completion examples in a row, each attending within itself
// at its own positions, so `eval` over packed rows gives the loss and
// accuracy of one example per row (padded) on the same tokens, where the
// wrapped rows of the same examples (attending across them) do not; a run
// trains and resumes with it; what contradicts it is refused. TRL's own
// packing=True step by step: test/trainer-parity.test.ts; the rows:
// test/packing-parity.test.ts; the model: packed-documents.test.ts. --padding-free puts
// each micro-batch's rows in one row and trains and evaluates as padded rows do.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  WORKERS_TOLERANCE,
  adapterGap,
  lorafleet,
  removeDir,
  trainFixture,
  writeJsonl,
} from './helpers.js';

let dir: string | undefined;
let model: string;
let data: string;

beforeAll(async () => {
  // Examples of 6 to 10 tokens (prompt, completion, EOS): three to five fit a row of 32.
  const lines = Array.from({ length: 24 }, (_, i) => ({
    prompt: `${i}:`,
    completion: ` ${'x'.repeat(1 + (i % 4))}.`,
  }));
  ({ dir, model, data } = await trainFixture('packing', lines));
}, 300_000);

afterAll(() => removeDir(dir));

interface Evaluated {
  loss: number;
  tokens: number;
  meanTokenAccuracy: number;
  rows: number;
}

async function evaluate(...extra: string[]): Promise<Evaluated> {
  const r = await lorafleet([
    ...['eval', '--model', model, '--data', data, '--seq-len', '32', '--json', ...extra],
  ]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Evaluated;
}

const train = (out: string, ...extra: string[]) =>
  lorafleet([
    ...['train', '--model', model, '--data', data, '--out', join(dir!, out), '--seq-len', '32'],
    ...['--steps', '4', '--batch-size', '2', '--lr', '2e-2', '--checkpoint-every', '2'],
    ...['--lora-dropout', '0', ...extra],
  ]);

describe('--packing-strategy', () => {
  it('eval: bfd rows score each example as it scores alone; wrapped rows do not', async () => {
    const padded = await evaluate('--packing', 'pad');
    const bfd = await evaluate('--packing-strategy', 'bfd');
    const wrapped = await evaluate('--packing', 'pack');
    expect(padded.rows).toBe(24);
    expect(bfd.rows).toBeLessThan(9); // 3 to 5 examples a row
    expect(bfd.tokens).toBe(padded.tokens);
    expect(Math.abs(bfd.loss - padded.loss)).toBeLessThan(1e-5);
    expect(bfd.meanTokenAccuracy).toBeCloseTo(padded.meanTokenAccuracy, 6);
    // Wrapped rows: examples see the ones before them (and their first tokens are predicted).
    expect(Math.abs(wrapped.loss - padded.loss)).toBeGreaterThan(1e-3);
  }, 120_000);

  it('trains on 2 workers as on 1, and a resume keeps the strategy', async () => {
    const [one, two] = await Promise.all([
      train('one', '--packing-strategy', 'bfd_split'),
      train('two', '--packing-strategy', 'bfd_split', '--workers', '2'),
    ]);
    expect(one.code, one.stderr).toBe(0);
    expect(two.code, two.stderr).toBe(0);
    expect(one.stdout).toMatch(/24 examples, \d+ tokens -> [5-8] rows of 32 \(packed, bfd_split\)/);
    const gap = await adapterGap(join(dir!, 'one', 'adapter'), join(dir!, 'two', 'adapter'));
    expect(gap.largestB).toBeGreaterThan(1e-3);
    expect(gap.diff).toBeLessThan(WORKERS_TOLERANCE);
    const resumed = await train('one', '--resume', join(dir!, 'one'), '--steps', '6');
    expect(resumed.code).toBe(2);
    expect(resumed.stderr).toContain('--packing-strategy (checkpoint "bfd_split", now "wrapped")');
  }, 240_000);

  it('refuses what contradicts it', async () => {
    const pad = await train('pad', '--packing', 'pad', '--packing-strategy', 'bfd');
    expect(pad.code).toBe(2);
    expect(pad.stderr).toContain('--packing-strategy bfd packs rows and --packing pad pads them');
    const pairs = await writeJsonl(join(dir!, 'pairs.jsonl'), [
      { prompt: 'p: ', chosen: 'yes.', rejected: 'no!' },
    ]);
    const dpo = await lorafleet([
      ...['train', '--model', model, '--data', pairs, '--out', join(dir!, 'dpo')],
      ...['--objective', 'dpo', '--packing-strategy', 'bfd'],
    ]);
    expect(dpo.code).toBe(2);
    expect(dpo.stderr).toContain('--packing-strategy configures the token loss (--objective sft)');
  }, 120_000);
});

describe('--padding-free', () => {
  it("eval: one row per micro-batch, longer than the model's context, scores as padded rows", async () => {
    const big = ['--batch-size', '16']; // 16 examples of 6 to 10 tokens: a row past n_positions 64
    const padded = await evaluate('--packing', 'pad', ...big);
    const free = await evaluate('--packing', 'pad', '--padding-free', ...big);
    expect(free.tokens).toBe(padded.tokens);
    expect(Math.abs(free.loss - padded.loss)).toBeLessThan(1e-5);
    expect(free.meanTokenAccuracy).toBeCloseTo(padded.meanTokenAccuracy, 6);
  }, 120_000);

  it('trains the adapter of padded rows, on 1 and 2 workers', async () => {
    const [padded, one, two] = await Promise.all([
      train('padded', '--packing', 'pad'),
      train('free', '--packing', 'pad', '--padding-free'),
      train('free-2', '--packing', 'pad', '--padding-free', '--workers', '2'),
    ]);
    for (const r of [padded, one, two]) expect(r.code, r.stderr).toBe(0);
    expect(one.stdout).toMatch(
      /rows of 32 \(padded; padding-free: each micro-batch's rows end to end\)/,
    );
    expect(padded.stdout).not.toMatch(/padding-free/);
    const adapter = (name: string) => join(dir!, name, 'adapter');
    const vsPadded = await adapterGap(adapter('free'), adapter('padded'));
    expect(vsPadded.largestB).toBeGreaterThan(1e-3);
    expect(vsPadded.diff).toBeLessThan(WORKERS_TOLERANCE);
    expect((await adapterGap(adapter('free'), adapter('free-2'))).diff).toBeLessThan(
      WORKERS_TOLERANCE,
    );
  }, 240_000);

  it('refuses what contradicts it', async () => {
    const both = await train('both', '--padding-free', '--padding', 'max_length');
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--padding-free puts rows end to end without padding');
    const pairs = await writeJsonl(join(dir!, 'free-pairs.jsonl'), [
      { prompt: 'p: ', chosen: 'yes.', rejected: 'no!' },
    ]);
    const dpo = await lorafleet([
      ...['train', '--model', model, '--data', pairs, '--out', join(dir!, 'free-dpo')],
      ...['--objective', 'dpo', '--padding-free'],
    ]);
    expect(dpo.code).toBe(2);
    expect(dpo.stderr).toContain('--padding-free configures the token loss (--objective sft)');
  }, 120_000);
});
