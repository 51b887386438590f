// Checkpoint verification end to end, with real `lorafleet train` processes: a
// run whose newest checkpoint got its adapter bytes damaged is resumed from
// its run folder; it warns naming that checkpoint and the file, resumes from
// the previous one and ends with the uninterrupted run's adapter, bit for bit
// (one worker in process, and --workers 2). A damaged checkpoint named
// directly, or a run without a valid one, fails with a clear error.
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adapterBytes,
  checkpointDir,
  lorafleet,
  lorafleetOk,
  patternRecords,
  removeDir,
  trainFixture,
} from './helpers.js';

let dir: string | undefined;
let trainArgs: (out: string, steps: number, ...more: string[]) => string[];

const weightsOf = (run: string, step: number) =>
  join(checkpointDir(run, step), 'adapter_model.safetensors');

/** Flips one bit in the last tensor's data: the file still parses, only its checksum tells. */
async function damageAdapter(run: string, step: number): Promise<void> {
  const path = weightsOf(run, step);
  const bytes = await readFile(path);
  bytes[bytes.length - 2]! ^= 0x01;
  await writeFile(path, bytes);
}

beforeAll(async () => {
  const made = await trainFixture('checkpoint-verify', patternRecords(40));
  dir = made.dir;
  const { model: base, data } = made;
  trainArgs = (out, steps, ...more) => [
    'train',
    ...['--model', base, '--data', data, '--out', out, '--steps', String(steps)],
    ...['--seq-len', '32', '--batch-size', '4', '--lr', '1e-2', '--lora-dropout', '0'],
    ...['--schedule', 'constant', '--checkpoint-every', '3', ...more],
  ];
}, 300_000);

afterAll(() => removeDir(dir));

describe.each([
  ['--workers 1', []],
  ['--workers 2', ['--workers', '2']],
] as const)('a damaged newest checkpoint, %s', (_name, workers) => {
  let full: string;

  beforeAll(async () => {
    full = join(dir!, `full${workers.join('')}`);
    await lorafleetOk(trainArgs(full, 9, ...workers));
  }, 90_000);

  it('is reported and skipped; the resume from the one before gives the same adapter', async () => {
    const run = join(dir!, `part${workers.join('')}`);
    await lorafleetOk(trainArgs(run, 6, ...workers));
    await damageAdapter(run, 6);

    const { stdout, stderr } = await lorafleetOk(trainArgs(run, 9, ...workers, '--resume', run));
    const warnings = stderr.split('\n').filter((l) => l.includes('is unusable'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      /^warning: checkpoint .*step-000006 is unusable: adapter_model\.safetensors: sha256 \w+… differs from the manifest's \w+… \(modified or corrupt\); using step-000003$/,
    );
    expect(stdout).toContain('at step 3');
    expect(Buffer.compare(await adapterBytes(run), await adapterBytes(full))).toBe(0);
    // Step 6 was trained and checkpointed again: its folder is whole and the same as the full run's.
    expect(
      Buffer.compare(await readFile(weightsOf(run, 6)), await readFile(weightsOf(full, 6))),
    ).toBe(0);
  }, 90_000);

  it('named directly, fails with the file and what to do', async () => {
    const run = join(dir!, `named${workers.join('')}`);
    await lorafleetOk(trainArgs(run, 3, ...workers));
    await damageAdapter(run, 3);
    const out = join(dir!, `named-out${workers.join('')}`);
    const result = await lorafleet(
      trainArgs(out, 9, ...workers, '--resume', checkpointDir(run, 3)),
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^lorafleet train: --resume .*step-000003: this checkpoint is unusable: adapter_model\.safetensors: sha256 .*Resume from its run folder instead/m,
    );
    expect(existsSync(join(out, 'adapter'))).toBe(false);
  }, 90_000);
});

it('a run with no valid checkpoint left fails clearly', async () => {
  const run = join(dir!, 'none');
  await lorafleetOk(trainArgs(run, 3));
  await damageAdapter(run, 3);
  const result = await lorafleet(trainArgs(run, 9, '--resume', run));
  expect(result.code).toBe(1);
  expect(result.stderr).toMatch(/step-000003 is unusable: .*; no valid checkpoint is left/);
  expect(result.stderr).toMatch(/none of its 1 checkpoints is usable/);
}, 90_000);
