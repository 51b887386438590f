// Checkpoints and --resume with --workers 2, real processes: rank 0 writes the
// one-worker checkpoint format, and a run stopped at step 4 and resumed to
// step 8 gives the uninterrupted run's adapter bytes, whether it resumes from
// its own run folder or from another run's checkpoint.
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  lorafleetOk,
  patternRecords,
  readJson,
  removeDir,
  checkpointDir,
  adapterBytes,
  trainFixture,
} from './helpers.js';

let dir: string | undefined;
let trainArgs: (out: string, steps: number, ...more: string[]) => string[];

beforeAll(async () => {
  const made = await trainFixture('distributed-resume', patternRecords(40));
  dir = made.dir;
  const { model: base, data } = made;
  trainArgs = (out, steps, ...more) => [
    'train',
    ...['--model', base, '--data', data, '--out', out, '--steps', String(steps)],
    ...['--seq-len', '32', '--batch-size', '4', '--lr', '1e-2', '--lora-dropout', '0'],
    ...['--schedule', 'constant', '--workers', '2', ...more],
  ];
}, 300_000);

afterAll(() => removeDir(dir));

/**
 * Runs train and checks that both workers stayed to the end: bitwise equality
 * holds for an unchanged ring only (a lost and replaced worker changes the
 * sums' rounding), so a lost worker is reported as such, with the run's log.
 */
async function train(out: string, steps: number, ...more: string[]): Promise<void> {
  const { stderr } = await lorafleetOk(trainArgs(out, steps, ...more));
  const summary = await readJson<{ steps: number; faults: unknown }>(join(out, 'summary.json'));
  expect(summary, `${out}: the ring changed\n${stderr}`).toMatchObject({
    steps,
    faults: { workersLost: 0, workersJoined: 0, fewestWorkers: 2 },
  });
}

describe('train --workers 2: checkpoints and --resume', () => {
  let full: string;

  beforeAll(async () => {
    full = join(dir!, 'full');
    await train(full, 8, '--checkpoint-every', '4');
  }, 60_000);

  it('writes the one-worker checkpoint format through rank 0', async () => {
    expect(await readdir(join(full, 'checkpoints'))).toEqual(['step-000004', 'step-000008']);
    expect((await readdir(checkpointDir(full, 8))).sort()).toEqual([
      'adapter_config.json',
      'adapter_model.safetensors',
      'manifest.json',
      'optimizer.safetensors',
      'trainer_state.json',
    ]);
    const state = await readJson<{ step: number; sampler: unknown; tokensSeen: number }>(
      join(checkpointDir(full, 4), 'trainer_state.json'),
    );
    expect(state.step).toBe(4);
    expect(state.tokensSeen).toBeGreaterThan(0);
    // The run's final adapter is the step-8 checkpoint's (no PiSSA here).
    expect(await readFile(join(checkpointDir(full, 8), 'adapter_model.safetensors'))).toEqual(
      await adapterBytes(full),
    );
  });

  it('stopped at step 4 and resumed to 8, gives the uninterrupted adapter bytes', async () => {
    const split = join(dir!, 'split');
    await train(split, 4);
    expect(await readdir(join(split, 'checkpoints'))).toEqual(['step-000004']);
    await train(split, 8, '--resume', split);
    expect(await adapterBytes(split)).toEqual(await adapterBytes(full));
    expect(await readFile(join(checkpointDir(split, 8), 'optimizer.safetensors'))).toEqual(
      await readFile(join(checkpointDir(full, 8), 'optimizer.safetensors')),
    );
    const metrics = (await readFile(join(split, 'metrics.jsonl'), 'utf8')).trimEnd().split('\n');
    expect(metrics.map((l) => (JSON.parse(l) as { step: number }).step)).toEqual([
      1, 2, 3, 4, 5, 6, 7, 8,
    ]);
  }, 60_000);

  it("resumes another run's checkpoint folder to the same bytes", async () => {
    const other = join(dir!, 'other');
    await train(other, 8, '--resume', checkpointDir(full, 4));
    expect(await adapterBytes(other)).toEqual(await adapterBytes(full));
  }, 60_000);
});
