// Checkpoints and exact resume with real processes: a run stopped at step 6
// and resumed gives the uninterrupted run's adapter and optimizer state bit for
// bit; a modified or partial checkpoint is reported and the previous one used;
// a resume that changes the math is refused, naming the option.
import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  lorafleet,
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
const optimizerBytes = (run: string, step: number) =>
  readFile(join(checkpointDir(run, step), 'optimizer.safetensors'));

beforeAll(async () => {
  const made = await trainFixture('checkpoint', patternRecords(40));
  dir = made.dir;
  const { model: base, data } = made;
  trainArgs = (out, steps, ...more) => [
    'train',
    ...['--model', base, '--data', data, '--out', out, '--steps', String(steps)],
    ...['--seq-len', '32', '--batch-size', '4', '--lr', '1e-2', ...more],
  ];
}, 300_000);

afterAll(() => removeDir(dir));

describe('lorafleet train checkpoints and --resume (--workers 1)', () => {
  let full: string;

  beforeAll(async () => {
    full = join(dir!, 'full');
    await lorafleetOk(trainArgs(full, 12, '--schedule', 'constant', '--checkpoint-every', '3'));
  }, 60_000);

  it('writes step folders atomically, with a manifest, keeping the last 3', async () => {
    expect(await readdir(join(full, 'checkpoints'))).toEqual([
      'step-000006',
      'step-000009',
      'step-000012',
    ]);
    expect((await readdir(checkpointDir(full, 12))).sort()).toEqual([
      'adapter_config.json',
      'adapter_model.safetensors',
      'manifest.json',
      'optimizer.safetensors',
      'trainer_state.json',
    ]);
    const manifest = await readJson<{ files: Record<string, { sha256: string }> }>(
      join(checkpointDir(full, 12), 'manifest.json'),
    );
    expect(Object.keys(manifest.files).sort()).toHaveLength(4);
    const state = await readJson<{ step: number; sampler: unknown; tokensSeen: number }>(
      join(checkpointDir(full, 12), 'trainer_state.json'),
    );
    expect(state.step).toBe(12);
    expect(state.sampler).toEqual({ epoch: expect.any(Number), cursor: expect.any(Number) });
    expect(state.tokensSeen).toBeGreaterThan(0);
    // The last checkpoint's adapter is the final adapter.
    expect(await readFile(join(checkpointDir(full, 12), 'adapter_model.safetensors'))).toEqual(
      await adapterBytes(full),
    );
  });

  it('6 steps, then --resume to 12: the same adapter and optimizer state, bitwise', async () => {
    const part = join(dir!, 'part');
    await lorafleetOk(trainArgs(part, 6, '--schedule', 'constant'));
    const { stdout } = await lorafleetOk(
      trainArgs(part, 12, '--schedule', 'constant', '--resume', part),
    );
    expect(stdout).toContain('at step 6');
    expect(Buffer.compare(await adapterBytes(part), await adapterBytes(full))).toBe(0);
    expect(Buffer.compare(await optimizerBytes(part, 12), await optimizerBytes(full, 12))).toBe(0);
    const metrics = (await readFile(join(part, 'metrics.jsonl'), 'utf8'))
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { step: number; loss: number });
    expect(metrics.map((m) => m.step)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    // The summary covers the whole run (steps 1-6 and 7-12), not the resumed part only.
    const summary = await readJson<{ trainLossFirst10: number; trainLossLast10: number }>(
      join(part, 'summary.json'),
    );
    const mean = (xs: { loss: number }[]) => xs.reduce((a, m) => a + m.loss, 0) / xs.length;
    expect(summary.trainLossFirst10).toBeCloseTo(mean(metrics.slice(0, 6)), 6);
    expect(summary.trainLossLast10).toBeCloseTo(mean(metrics.slice(6)), 6);
    expect(stdout).toMatch(/\(first 6 steps\) -> [\d.]+ \(last 6\)/);
  });

  it('resumes a linear-schedule run from a named checkpoint folder exactly', async () => {
    const linear = join(dir!, 'linear');
    await lorafleetOk(trainArgs(linear, 12, '--checkpoint-every', '6'));
    const again = join(dir!, 'linear-again');
    await lorafleetOk(trainArgs(again, 12, '--resume', checkpointDir(linear, 6)));
    expect(Buffer.compare(await adapterBytes(again), await adapterBytes(linear))).toBe(0);
  });

  it('skips a modified or partial newest checkpoint with a warning naming the file', async () => {
    const damaged = join(dir!, 'damaged');
    await cp(full, damaged, { recursive: true });
    const weights = join(checkpointDir(damaged, 12), 'adapter_model.safetensors');
    const bytes = await readFile(weights);
    bytes[bytes.length - 1]! ^= 1;
    await writeFile(weights, bytes);
    // A crash mid-write: a folder without its manifest.
    await mkdir(checkpointDir(damaged, 15));
    await writeFile(join(checkpointDir(damaged, 15), 'trainer_state.json'), '{}');
    const { stderr } = await lorafleetOk(
      trainArgs(damaged, 12, '--schedule', 'constant', '--resume', damaged),
    );
    expect(stderr).toMatch(/step-000015 is unusable: .*manifest\.json/);
    expect(stderr).toMatch(
      /step-000012 is unusable: .*adapter_model\.safetensors.*; using step-000009/,
    );
    // Steps 10-12 were trained again from step 9: the same result.
    expect(Buffer.compare(await adapterBytes(damaged), await adapterBytes(full))).toBe(0);
  });

  it('refuses a resume that changes --lora-r, naming it', async () => {
    const result = await lorafleet(
      trainArgs(
        join(dir!, 'other'),
        12,
        '--schedule',
        'constant',
        '--resume',
        full,
        '--lora-r',
        '4',
      ),
    );
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('--lora-r (checkpoint 8, now 4)');
    expect(existsSync(join(dir!, 'other', 'adapter'))).toBe(false);
  });

  it('applies the same config rules to a --resume with --workers 2', async () => {
    const result = await lorafleet([
      ...trainArgs(join(dir!, 'n'), 12),
      '--workers',
      '2',
      '--resume',
      full,
    ]);
    // The checkpoint was written with --schedule constant; --workers is not a math option.
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /cannot resume from .*--schedule \(checkpoint "constant", now "linear"\)/,
    );
    expect(result.stderr).not.toContain('--workers');
  });
});
