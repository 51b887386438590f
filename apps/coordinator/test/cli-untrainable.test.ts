// Rows with nothing to learn, with real processes: prompt/completion rows
// whose completion --seq-len cuts off are dropped when the data loads, named
// by file:line, and the data is refused only when none is left; a data error
// on a worker of a --workers run ends the run at once (exit 1, the rows
// named), without respawns, restarts or advice to --resume. With
// --truncation-mode keep_end a row keeps its end, and so its completion.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  SEQ_LEN,
  ensureBuilt,
  initTinyModel,
  lorafleet,
  makeTempDir,
  readJson,
  removeDir,
  writeJsonl,
} from './helpers.js';

let dir: string | undefined;
let base: string;
/** Even lines (1-based: odd) have a prompt longer than the 32-token context. */
let mixed: string;
let allCut: string;

const longPrompt = (i: number) => ({
  prompt: `a prompt that fills the whole context and more, number ${i}`,
  completion: ' done',
});
const shortPrompt = (i: number) => ({ prompt: `q${i}`, completion: ' a short answer' });

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('untrainable');
  base = await initTinyModel(dir, 'base');
  mixed = await writeJsonl(
    join(dir, 'mixed.jsonl'),
    Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? longPrompt(i) : shortPrompt(i))),
  );
  allCut = await writeJsonl(
    join(dir, 'all-cut.jsonl'),
    Array.from({ length: 8 }, (_, i) => longPrompt(i)),
  );
}, 300_000);

afterAll(() => removeDir(dir));

const trainArgs = (data: string, out: string, ...more: string[]) => [
  'train',
  ...['--model', base, '--data', data, '--out', join(dir!, out)],
  ...['--batch-size', '2', '--seq-len', SEQ_LEN, '--steps', '4', ...more],
];

describe.concurrent('rows without a trained token', () => {
  it('are dropped at load time and named; training goes on with the rest', async () => {
    const result = await lorafleet(trainArgs(mixed, 'run-mixed'));
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain(
      `warning: ${mixed}: dropped 20 examples with no token to train on within --seq-len 32`,
    );
    expect(result.stderr).toContain(
      `${mixed}:1: no trained token within --seq-len 32: the completion starts at token`,
    );
    expect(result.stderr).toContain('... and 10 more');
    const summary = await readJson<{ steps: number }>(join(dir!, 'run-mixed', 'summary.json'));
    expect(summary.steps).toBe(4);
  });

  it('refuse the data when no row is left, with exit 1 and the rows named', async () => {
    const result = await lorafleet(trainArgs(allCut, 'run-all-cut'));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      `${allCut}: none of its 8 examples has a token to train on within --seq-len 32; raise --seq-len or shorten the prompts:`,
    );
    expect(result.stderr).toContain(`${allCut}:8: no trained token`);
  });

  it("--truncation-mode keep_end (TRL's) keeps the completions the context would cut", async () => {
    const result = await lorafleet(
      trainArgs(allCut, 'run-keep-end', '--truncation-mode', 'keep_end'),
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('8 examples');
    expect(result.stderr).toMatch(
      new RegExp(
        `warning: ${allCut}: 8 examples longer than 32 tokens were cut to their last 32 \\(--truncation-mode keep_end; \\d+ tokens lost\\)`,
      ),
    );
    expect(result.stderr).not.toContain('dropped');
  });

  it('a data error on a worker stops a --workers 2 run: no respawn, rows named, no --resume', async () => {
    const started = performance.now();
    const result = await lorafleet(
      trainArgs(mixed, 'run-workers', '--workers', '2', '--max-restarts', '3'),
      90_000,
      // A test hook: every rank's batches of step 2 lose their labels.
      { LORAFLEET_FAULT_UNLABELLED_AT: '2' },
    );
    const seconds = (performance.now() - started) / 1000;
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      new RegExp(
        `lorafleet train: a data error, which no restart fixes: worker \\d \\(pid \\d+\\) failed \\(data\\): ` +
          `rank \\d: step 2: the batch has no labelled tokens; this rank's rows: ${mixed.replace(/[.]/g, '\\.')}:\\d+`,
      ),
    );
    expect(result.stderr).toContain('fix the data and run again');
    expect(result.stderr).not.toContain('respawned');
    expect(result.stderr).not.toContain('--resume');
    expect(result.stderr).not.toContain(' lost: ');
    expect(seconds).toBeLessThan(60);
  });
});
