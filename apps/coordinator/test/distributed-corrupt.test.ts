// End to end: a replica that diverges (made so by the worker's test hook
// LORAFLEET_FAULT_CORRUPT_AT) fails the run at that step, naming the ranks,
// and no adapter is written.
import { spawn } from 'node:child_process';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  REPO_ROOT,
  ensureBuilt,
  initTinyModel,
  makeTempDir,
  patternRecords,
  removeDir,
  writeJsonl,
} from './helpers.js';

const CLI_BIN = join(REPO_ROOT, 'apps', 'coordinator', 'bin', 'lorafleet.js');

let dir: string | undefined;
let model: string;
let data: string;

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('corrupt');
  model = await initTinyModel(dir, 'model');
  data = await writeJsonl(join(dir, 'train.jsonl'), patternRecords(40));
}, 300_000);

afterAll(() => removeDir(dir));

describe('a corrupted replica', () => {
  it('fails the run at that step, naming the differing ranks, and writes no adapter', async () => {
    const out = join(dir!, 'corrupt');
    const args = ['train', '--model', model, '--data', data, '--out', out];
    const child = spawn(
      process.execPath,
      [CLI_BIN, ...args, '--steps', '6', '--batch-size', '4', '--seq-len', '32', '--workers', '2'],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, LORAFLEET_FAULT_CORRUPT_AT: '1:3', LORAFLEET_DEBUG: '' },
        timeout: 90_000,
      },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, stderr).toBe(1);
    expect(stderr).toMatch(
      /step 3: the replicas diverged \(parameter hashes differ: rank 0: [0-9a-f]+; rank 1: [0-9a-f]+\)/,
    );
    await expect(access(join(out, 'adapter'))).rejects.toThrow();
  });
});
