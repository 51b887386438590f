// The checkpoint folder format without a training run: write, verify, read
// back, prune, and the choice of checkpoint to resume from.
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_OPTIMIZER, type TrainableParameters, useBackend } from '@lorafleet/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CheckpointError,
  findResumeCheckpoint,
  listCheckpoints,
  pruneCheckpoints,
  readOptimizerState,
  readTrainerState,
  verifyCheckpoint,
  writeCheckpoint,
} from '../src/training/checkpoint.js';
import { ADAPTER as adapter, fixtureParameters, trainerState } from './checkpoint-fixture.js';

let out: string;
let params: TrainableParameters;

async function write(step: number): Promise<string> {
  const m = Float32Array.from({ length: params.size }, (_, i) => step + i / 3);
  const v = Float32Array.from({ length: params.size }, (_, i) => step * i + 0.1);
  return writeCheckpoint(out, {
    adapter,
    params,
    settings: DEFAULT_OPTIMIZER,
    optimizer: { step, buffers: { exp_avg: m, exp_avg_sq: v } },
    state: trainerState(step),
  });
}

beforeAll(async () => {
  await useBackend('cpu');
  out = await mkdtemp(join(tmpdir(), 'lorafleet-ckpt-files-'));
  params = fixtureParameters();
});

afterAll(() => rm(out, { recursive: true, force: true }));

describe('checkpoint folders', () => {
  it('round-trips the trainer state and the AdamW moments, leaving no temp folder', async () => {
    const dir = await write(3);
    await verifyCheckpoint(dir);
    expect(await readTrainerState(dir)).toEqual(trainerState(3));
    const optimizer = await readOptimizerState(dir, params, DEFAULT_OPTIMIZER, 3);
    expect(optimizer.step).toBe(3);
    expect(optimizer.buffers.exp_avg![5]).toBe(Math.fround(3 + 5 / 3));
    expect(optimizer.buffers.exp_avg_sq![13]).toBe(Math.fround(3 * 13 + 0.1));
    expect(await readdir(join(out, 'checkpoints'))).toEqual(['step-000003']);
  });

  it('keeps the newest N', async () => {
    for (const step of [6, 9, 12]) await write(step);
    await pruneCheckpoints(out, 2);
    expect(await listCheckpoints(out)).toEqual([9, 12]);
  });

  it('resumes from the newest checkpoint that verifies, warning about the others', async () => {
    await writeFile(join(out, 'checkpoints', 'step-000012', 'optimizer.safetensors'), 'junk');
    const warnings: string[] = [];
    const chosen = await findResumeCheckpoint(out, (w) => warnings.push(w));
    expect(chosen).toBe(join(out, 'checkpoints', 'step-000009'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      /step-000012 is unusable: .*optimizer\.safetensors.*using step-000009/,
    );
    await expect(verifyCheckpoint(join(out, 'checkpoints', 'step-000012'))).rejects.toThrow(
      CheckpointError,
    );
  });
});
