// --train-sampling-strategy (and --data-seed, --dataloader-drop-last)
// through the real CLI on 2 workers, read back from the sample ledger: group_by_length gives each step rows of similar
// lengths (the longest row of all at the first step) where random mixes
// them; a group_by_length run stopped and resumed ends with the
// uninterrupted adapter bytes; sequential takes the rows in file order; a
// resume keeps the checkpoint's strategy. The order itself against
// transformers' LengthGroupedSampler: test/length-grouped-parity.test.ts.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NO_DROPOUT_CONFIG,
  adapterBytes,
  ensureBuilt,
  initTinyModel,
  lorafleet,
  makeTempDir,
  removeDir,
  writeJsonl,
} from './helpers.js';

let dir: string | undefined;
let model: string;
let data: string;
/** Each row's bytes (its tokens, less EOS: the tiny model reads bytes). */
let bytes: number[];

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('sampling');
  model = await initTinyModel(dir, 'model', 0, NO_DROPOUT_CONFIG);
  // 96 rows of 10 to 26 bytes: batches of 4 group in megabatches of 6 batches (transformers' rule).
  const lines = Array.from({ length: 96 }, (_, i) => ({
    prompt: `q${String(i).padStart(2, '0')}: ${'ab'.repeat((i * 5) % 6)}`,
    completion: ` ${'xyz'.repeat(1 + ((i * 7) % 3))}.`,
  }));
  bytes = lines.map((l) => l.prompt.length + l.completion.length);
  data = await writeJsonl(join(dir, 'pc.jsonl'), lines);
}, 300_000);

afterAll(() => removeDir(dir));

const train = (out: string, ...extra: string[]) =>
  lorafleet([
    ...['train', '--model', model, '--data', data, '--out', join(dir!, out)],
    ...['--seq-len', '32', '--steps', '8', '--batch-size', '4', '--lr', '2e-2'],
    ...['--workers', '2', '--schedule', 'constant', '--checkpoint-every', '4', ...extra],
  ]);

/** Each step's row ids, from the sample ledger. */
async function ledger(out: string): Promise<number[][]> {
  const text = await readFile(join(dir!, out, 'ledger.jsonl'), 'utf8');
  return text
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { ids: number[] }).ids);
}

/** The mean over steps of (longest - shortest) row in bytes. */
const spread = (steps: number[][]) =>
  steps
    .map((ids) => Math.max(...ids.map((i) => bytes[i]!)) - Math.min(...ids.map((i) => bytes[i]!)))
    .reduce((a, b) => a + b, 0) / steps.length;

describe('train --train-sampling-strategy', () => {
  it('group_by_length: steps of similar lengths, the longest first; resumed, the same bytes', async () => {
    const grouped = ['--train-sampling-strategy', 'group_by_length'];
    const [random, whole, split, dataSeed] = await Promise.all([
      train('random'),
      train('grouped', ...grouped),
      train('split', ...grouped, '--steps', '4'),
      train('data-seed', '--seed', '5', '--data-seed', '0'),
    ]);
    for (const run of [random, whole, split, dataSeed]) expect(run.code, run.stderr).toBe(0);
    // --data-seed alone orders the batches: another --seed, the same steps, another adapter.
    expect(await ledger('data-seed')).toEqual(await ledger('random'));
    expect(await adapterBytes(join(dir!, 'data-seed'))).not.toEqual(
      await adapterBytes(join(dir!, 'random')),
    );
    expect(whole.stdout).toContain('batches grouped by length (longest first)');
    const [r, g] = [await ledger('random'), await ledger('grouped')];
    expect(g).toHaveLength(8);
    expect(Math.max(...g[0]!.map((i) => bytes[i]!))).toBe(Math.max(...bytes));
    expect(spread(g)).toBeLessThan(spread(r) / 3);
    // Every row at most once an epoch (96 rows: 24 steps), none twice.
    expect(new Set(g.flat()).size).toBe(32);
    const resumed = await train('split', ...grouped, '--resume', join(dir!, 'split'));
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(await ledger('split')).toEqual(g);
    expect(await adapterBytes(join(dir!, 'split'))).toEqual(
      await adapterBytes(join(dir!, 'grouped')),
    );
  }, 300_000);

  it('--dataloader-drop-last: an epoch of full batches, its short last one left out', async () => {
    // 96 rows in batches of 5: 19 full batches and 1 row over.
    const run = await lorafleet([
      ...['train', '--model', model, '--data', data, '--out', join(dir!, 'drop-last')],
      ...['--seq-len', '32', '--epochs', '1', '--batch-size', '5', '--workers', '2'],
      '--dataloader-drop-last',
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('19 steps of 5 rows x 32 tokens (1.00 epochs)');
    const steps = await ledger('drop-last');
    expect(steps.map((ids) => ids.length)).toEqual(Array.from({ length: 19 }, () => 5));
    expect(new Set(steps.flat()).size).toBe(95);
  }, 300_000);

  it('sequential: the rows in file order; a resume keeps the checkpoint strategy', async () => {
    const run = await train('sequential', '--train-sampling-strategy', 'sequential');
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('rows in file order');
    const steps = await ledger('sequential');
    expect(steps).toEqual(Array.from({ length: 8 }, (_, s) => [0, 1, 2, 3].map((i) => 4 * s + i)));
    const resumed = await train(
      'sequential',
      '--steps',
      '12',
      '--resume',
      join(dir!, 'sequential'),
    );
    expect(resumed.code).toBe(2);
    expect(resumed.stderr).toContain(
      '--train-sampling-strategy (checkpoint "sequential", now "random")',
    );
  }, 300_000);
});
