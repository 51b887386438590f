// A checkpoint written before --wire-dtype joined the options that change the
// math has no "wire-dtype" in its config, and its hash covers the config
// without it. Such a checkpoint trained in fp32, so --resume reads the absent
// field as fp32: it resumes (bitwise as uninterrupted) and refuses bf16.
import { cp, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TrainerState, manifestText } from '@lorafleet/worker';
import { UsageError } from '../src/args.js';
import { checkResumeConfig, configHash } from '../src/training/resume.js';
import {
  NO_DROPOUT_CONFIG,
  adapterBytes,
  checkpointDir,
  ensureBuilt,
  initTinyModel,
  lorafleet,
  lorafleetOk,
  makeTempDir,
  numberedPatternRecords,
  removeDir,
  writeJsonl,
} from './helpers.js';

let dir: string;
let trainArgs: (out: string, ...more: string[]) => string[];

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('old-checkpoint');
  const model = await initTinyModel(dir, 'model', 0, NO_DROPOUT_CONFIG);
  const data = await writeJsonl(join(dir, 'train.jsonl'), numberedPatternRecords(40));
  trainArgs = (out, ...more) => [
    'train',
    ...['--model', model, '--data', data, '--out', out, '--steps', '8', '--batch-size', '6'],
    ...['--lora-dropout', '0', '--lr', '1e-2', '--seed', '5', '--checkpoint-every', '4', ...more],
  ];
}, 120_000);

afterAll(() => removeDir(dir));

/** `checkpoint` rewritten as a lorafleet without --wire-dtype wrote it: no field, its own hash, a new manifest. */
async function withoutWireDtype(checkpoint: string): Promise<void> {
  const path = join(checkpoint, 'trainer_state.json');
  const state = JSON.parse(await readFile(path, 'utf8')) as TrainerState;
  expect(state.config['wire-dtype']).toBe('fp32');
  delete state.config['wire-dtype'];
  state.configHash = configHash(state.config);
  await writeFile(path, `${JSON.stringify(state, null, 2)}\n`);
  const names = (await readdir(checkpoint)).filter((n) => n !== 'manifest.json');
  const files = new Map<string, Uint8Array>();
  for (const name of names) files.set(name, await readFile(join(checkpoint, name)));
  await writeFile(join(checkpoint, 'manifest.json'), manifestText(state.step, files));
}

describe('--resume of a checkpoint older than --wire-dtype', () => {
  it('reads the absent wire dtype as fp32: resumes bitwise, refuses bf16 naming the option', async () => {
    const whole = join(dir, 'whole');
    await lorafleetOk(trainArgs(whole));
    const old = join(dir, 'old', 'step-000004');
    await cp(checkpointDir(whole, 4), old, { recursive: true });
    await withoutWireDtype(old);

    const resumed = join(dir, 'resumed');
    await lorafleetOk(trainArgs(resumed, '--resume', old));
    expect((await adapterBytes(resumed)).equals(await adapterBytes(whole))).toBe(true);

    const bf16 = await lorafleet(
      trainArgs(join(dir, 'bf16'), '--resume', old, '--wire-dtype', 'bf16'),
    );
    expect(bf16.code, bf16.stderr).toBe(2);
    expect(bf16.stderr).toContain('--wire-dtype (checkpoint "fp32", now "bf16")');
  }, 120_000);

  it('fills in only a field that is absent and a hash that covers the config as saved', () => {
    const current = { model: 'm', 'wire-dtype': 'fp32', 'lora-r': 8 };
    const legacy = { model: 'm', 'lora-r': 8 };
    const state = (config: Record<string, unknown>, hash = configHash(config)) =>
      ({ config, configHash: hash }) as TrainerState;
    expect(() => checkResumeConfig('ckpt', state(legacy), current)).not.toThrow();
    // A config that says something else, or a hash over another config, is still refused.
    expect(() => checkResumeConfig('ckpt', state({ ...legacy, 'lora-r': 4 }), current)).toThrow(
      /--lora-r \(checkpoint 4, now 8\)/,
    );
    expect(() =>
      checkResumeConfig('ckpt', state(legacy, configHash(current) + 'x'), current),
    ).toThrow(UsageError);
    expect(() =>
      checkResumeConfig('ckpt', state(legacy), { ...current, 'wire-dtype': 'fp16' }),
    ).toThrow(/--wire-dtype \(checkpoint "fp32", now "fp16"\)/);
  });
});
