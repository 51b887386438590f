// Choosing the checkpoint to resume from, without a training run: a run
// folder is walked newest to oldest, each damaged checkpoint reported in one
// line naming its file and the one used instead; a named checkpoint folder
// that is damaged, or a run with no valid checkpoint, is a clear error; and
// pruning never takes the fallback away.
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEFAULT_OPTIMIZER,
  type TrainableParameters,
  createOptimizerState,
  useBackend,
} from '@lorafleet/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  listCheckpoints,
  pruneCheckpoints,
  resumeCheckpoint,
  writeCheckpoint,
} from '../src/training/checkpoint.js';
import {
  ADAPTER as adapter,
  fixtureParameters,
  trainerState as state,
} from './checkpoint-fixture.js';
import { checkpointDir } from './helpers.js';

let root: string;
let params: TrainableParameters;
let runs = 0;

/** A run folder with checkpoints at `steps`. */
async function runWith(...steps: number[]): Promise<string> {
  const out = join(root, `run-${runs++}`);
  for (const step of steps) {
    const m = new Float32Array(params.size).fill(step);
    await writeCheckpoint(out, {
      adapter,
      params,
      settings: DEFAULT_OPTIMIZER,
      optimizer: { step, buffers: { exp_avg: m, exp_avg_sq: m } },
      state: state(step),
    });
  }
  return out;
}

const weights = (out: string, step: number) =>
  join(checkpointDir(out, step), 'adapter_model.safetensors');

async function flipLastByte(path: string): Promise<void> {
  const bytes = await readFile(path);
  bytes[bytes.length - 1]! ^= 0x10;
  await writeFile(path, bytes);
}

async function resume(from: string): Promise<{ step: number; warnings: string[] }> {
  const warnings: string[] = [];
  const c = await resumeCheckpoint(from, (w) => warnings.push(w));
  return { step: c.state.step, warnings };
}

beforeAll(async () => {
  await useBackend('cpu');
  root = await mkdtemp(join(tmpdir(), 'lorafleet-ckpt-choose-'));
  params = fixtureParameters();
});

afterAll(() => rm(root, { recursive: true, force: true }));

describe('--resume RUNDIR', () => {
  it('uses the newest checkpoint, silently, when it verifies', async () => {
    expect(await resume(await runWith(2, 4))).toEqual({ step: 4, warnings: [] });
  });

  it('walks back past each damaged one, one warning line each', async () => {
    const out = await runWith(2, 4, 6, 8);
    await flipLastByte(weights(out, 8));
    await truncate(join(checkpointDir(out, 6), 'optimizer.safetensors'), 10);
    // A crash before the rename leaves a temp folder, never a step folder: ignored.
    await mkdir(join(out, 'checkpoints', '.tmp-step-000010'));
    const { step, warnings } = await resume(out);
    expect(step).toBe(4);
    expect(warnings).toEqual([
      expect.stringMatching(
        /^checkpoint .*step-000008 is unusable: adapter_model\.safetensors: sha256 \w+… differs from the manifest's \w+… \(modified or corrupt\); using step-000004$/,
      ),
      expect.stringMatching(
        /^checkpoint .*step-000006 is unusable: optimizer\.safetensors: 10 bytes, the manifest lists \d+ \(truncated\); using step-000004$/,
      ),
    ]);
    expect(warnings.every((w) => !w.includes('\n'))).toBe(true);
  });

  it('reports a step folder without a manifest (copied in part) as incomplete', async () => {
    const out = await runWith(3);
    await mkdir(checkpointDir(out, 9));
    await writeFile(join(checkpointDir(out, 9), 'trainer_state.json'), '{}');
    const { step, warnings } = await resume(out);
    expect(step).toBe(3);
    expect(warnings).toEqual([
      expect.stringMatching(
        /step-000009 is unusable: manifest\.json: missing; the checkpoint is incomplete; using step-000003$/,
      ),
    ]);
  });

  it('fails clearly when no checkpoint is valid', async () => {
    const out = await runWith(1, 2);
    await flipLastByte(weights(out, 1));
    await flipLastByte(weights(out, 2));
    const warnings: string[] = [];
    await expect(resumeCheckpoint(out, (w) => warnings.push(w))).rejects.toThrow(
      /--resume .*: none of its 2 checkpoints is usable \(each is reported above\)/,
    );
    expect(warnings).toHaveLength(2);
    expect(warnings[1]).toMatch(/step-000001 is unusable: .*; no valid checkpoint is left$/);
  });

  it('fails clearly on a folder with no checkpoints, or none at all', async () => {
    const empty = join(root, 'empty');
    await mkdir(empty);
    await expect(resume(empty)).rejects.toThrow(/--resume .*empty: no checkpoints \(expected/);
    await expect(resume(join(root, 'nowhere'))).rejects.toThrow(/nowhere: no such folder/);
  });
});

describe('--resume CHECKPOINTDIR', () => {
  it('uses an intact one', async () => {
    const out = await runWith(2, 4);
    expect(await resume(checkpointDir(out, 2))).toEqual({ step: 2, warnings: [] });
  });

  it('refuses a damaged one, without falling back', async () => {
    const out = await runWith(2, 4);
    await flipLastByte(weights(out, 4));
    await expect(resume(checkpointDir(out, 4))).rejects.toThrow(
      /--resume .*step-000004: this checkpoint is unusable: adapter_model\.safetensors: sha256 .*Resume from its run folder instead/,
    );
  });

  it('refuses a step folder that lost its manifest', async () => {
    const out = await runWith(2);
    await rm(join(checkpointDir(out, 2), 'manifest.json'));
    await expect(resume(checkpointDir(out, 2))).rejects.toThrow(
      /this checkpoint is unusable: manifest\.json: missing; the checkpoint is incomplete/,
    );
  });
});

describe('--keep-checkpoints', () => {
  it('keeps the newest N, counting the one just written', async () => {
    const out = await runWith(2, 4, 6);
    await pruneCheckpoints(out, 2, 6);
    expect(await listCheckpoints(out)).toEqual([4, 6]);
  });

  it('keeps the fallback after a resume past damaged checkpoints', async () => {
    // 6 and 8 damaged; resumed from 4 and now checkpointing every step: 5 just written.
    const out = await runWith(2, 4, 6, 8);
    await flipLastByte(weights(out, 6));
    await flipLastByte(weights(out, 8));
    await writeCheckpoint(out, {
      adapter,
      params,
      settings: DEFAULT_OPTIMIZER,
      optimizer: { ...createOptimizerState(DEFAULT_OPTIMIZER, params.layout), step: 5 },
      state: state(5),
    });
    await pruneCheckpoints(out, 2, 5);
    // The superseded 6 and 8 no longer count (nor stay to be picked); 4 is the fallback.
    expect(await listCheckpoints(out)).toEqual([4, 5]);
    await flipLastByte(weights(out, 5));
    const { step, warnings } = await resume(out);
    expect([step, warnings.length]).toEqual([4, 1]);
  });

  it('a checkpoint cut short by a crash neither counts nor is picked', async () => {
    // Writers build in .tmp-step-NNNNNN and rename it into place before pruning.
    const out = await runWith(1, 2);
    const partial = join(out, 'checkpoints', '.tmp-step-000003');
    await mkdir(partial);
    await writeFile(join(partial, 'trainer_state.json'), JSON.stringify(state(3)));
    await pruneCheckpoints(out, 2);
    expect(await listCheckpoints(out)).toEqual([1, 2]);
    expect(await resume(out)).toEqual({ step: 2, warnings: [] });
  });
});
