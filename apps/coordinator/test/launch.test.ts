// `train --launcher`: the flag combinations refused under a launcher, and the
// run id that makes a restarted job resume from its own checkpoints.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { placementFrom } from '../src/launch/placement.js';
import { RUN_ID_FILE, restartOf } from '../src/launch/run-id.js';
import type { TrainOptions } from '../src/training/train-spec.js';

const SLURM = {
  SLURM_PROCID: '1',
  SLURM_NTASKS: '3',
  SLURM_LOCALID: '1',
  SLURM_JOB_ID: '77',
  SLURM_STEP_NODELIST: 'node[3-5]',
};

/** The options placementFrom reads; the rest of TrainOptions plays no part. */
const options = (o: Partial<TrainOptions>) => ({ workers: 1, ...o }) as TrainOptions;

describe('placementFrom', () => {
  it('is undefined without a launcher, and refuses placement flags then', () => {
    expect(placementFrom(options({}), SLURM)).toBeUndefined();
    expect(() => placementFrom(options({ rank: 1 }), {})).toThrow(
      /--rank needs --launcher \(e.g. --launcher auto\)/,
    );
  });

  it('reads the launcher named by the flag or LORAFLEET_LAUNCHER; flags win', () => {
    expect(placementFrom(options({ launcher: 'slurm' }), SLURM)).toMatchObject({
      rank: 1,
      worldSize: 3,
      coordinator: { host: 'node3' },
      runId: 'slurm-77',
    });
    expect(
      placementFrom(options({ worldSize: 4 }), { ...SLURM, LORAFLEET_LAUNCHER: 'auto' }),
    ).toMatchObject({ rank: 1, worldSize: 4 });
  });

  it.each([
    [{ listen: 'tcp://0.0.0.0:1' }, /--listen and --launcher slurm exclude each other/],
    [{ expect: 3 }, /--expect and --launcher slurm exclude each other/],
    [{ workers: 3 }, /--workers and --launcher slurm exclude each other/],
  ])('refuses %j under a launcher', (extra, message) => {
    expect(() => placementFrom(options({ launcher: 'slurm', ...extra }), SLURM)).toThrow(message);
  });

  it('names the variables it looked for when it cannot tell the role', () => {
    expect(() => placementFrom(options({ launcher: 'auto' }), {})).toThrow(
      /train: --launcher auto: cannot tell this process's rank; looked for RANK, WORLD_SIZE/,
    );
  });
});

describe('restartOf (the run id recorded in --out)', () => {
  let out: string | undefined;
  afterEach(() => (out ? rm(out, { recursive: true, force: true }) : undefined));

  it('starts fresh the first time, resumes a restart with checkpoints, replaces one without', async () => {
    out = await mkdtemp(join(tmpdir(), 'lorafleet-launch-'));
    expect(await restartOf(out, undefined)).toBeUndefined();
    expect(await restartOf(out, 'slurm-77')).toBeUndefined();
    expect((await readFile(join(out, RUN_ID_FILE), 'utf8')).trim()).toBe('slurm-77');
    // Restarted before its first checkpoint: its partial files are replaced.
    expect(await restartOf(out, 'slurm-77')).toEqual({ overwrite: true });
    await mkdir(join(out, 'checkpoints', 'step-000004'), { recursive: true });
    expect(await restartOf(out, 'slurm-77')).toEqual({ resume: out });
    // Another job's folder is left to --resume and --overwrite.
    expect(await restartOf(out, 'slurm-78')).toBeUndefined();
    await writeFile(join(out, RUN_ID_FILE), 'slurm-77\n');
    expect(await restartOf(out, 'slurm-77')).toEqual({ resume: out });
  });
});
