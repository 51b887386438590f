// Checkpoints written before an option that changes the math existed, or
// under an option's old name. One written before --wire-dtype has no
// "wire-dtype" in its config, and its hash covers the config without it.
// Such a checkpoint trained in fp32, so --resume reads the absent field as
// fp32: it resumes (bitwise as uninterrupted) and refuses bf16. One written
// before --objective trained the token loss; one with --dpo-beta (renamed
// --beta) reads it as --beta for a DPO run and as none for the token loss.
import { cp, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TrainerState, manifestText } from '@lorafleet/worker';
import { UsageError } from '../src/args.js';
import { checkResumeConfig, configHash, trainingConfig } from '../src/training/resume.js';
import { trainSpec } from '../src/training/train-spec.js';
import { parseCommand } from '../src/args.js';
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
    const current = runConfig();
    const legacy = without(current, 'wire-dtype');
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

describe('--resume of a checkpoint written before --objective, or with --dpo-beta', () => {
  const current = runConfig();
  const state = (config: Record<string, unknown>) =>
    ({ config, configHash: configHash(config) }) as TrainerState;

  it('reads each option a checkpoint predates as what a run without it records', () => {
    // A checkpoint of the version before DoRA, LoRA+, NEFTune, the objectives and --wire-dtype.
    const older = without(
      current,
      ...['use-dora', 'loraplus-lr-ratio', 'neftune-noise-alpha', 'objective', 'beta'],
      ...['dpo-loss', 'dpo-label-smoothing', 'simpo-gamma', 'wire-dtype', 'cpo-loss', 'cpo-alpha'],
      ...['dpo-loss-weights', 'f-divergence', 'f-alpha', 'discopop-tau', 'ld-alpha'],
      ...['cpo-label-smoothing', 'kto-loss', 'desirable-weight', 'undesirable-weight'],
      ...['alphapo-alpha', 'use-weighting', 'optim', 'optim-args'],
    );
    expect(() => checkResumeConfig('ckpt', state(older), current)).not.toThrow();
    expect(() => checkResumeConfig('ckpt', state(older), { ...current, 'use-dora': true })).toThrow(
      /--use-dora \(checkpoint false, now true\)/,
    );
    expect(() =>
      checkResumeConfig('ckpt', state(older), { ...current, objective: 'orpo', beta: 0.1 }),
    ).toThrow(/--objective \(checkpoint "sft", now "orpo"\)/);
  });

  it('reads a checkpoint written before --padding as padded to --seq-len (max_length), which it names', () => {
    expect(current.padding).toBe('longest');
    const before = without(current, 'padding');
    expect(() => checkResumeConfig('ckpt', state(before), current)).toThrow(
      /--padding \(checkpoint "max_length", now "longest"\)/,
    );
    expect(() =>
      checkResumeConfig('ckpt', state(before), { ...current, padding: 'max_length' }),
    ).not.toThrow();
  });

  it('reads a SimPO checkpoint written before --cpo-alpha as SimPO without the NLL term', () => {
    const simpo = { ...current, objective: 'simpo', beta: 2 };
    const before = without(simpo, 'cpo-loss', 'cpo-alpha');
    expect(() => checkResumeConfig('ckpt', state(before), simpo)).not.toThrow();
    expect(() => checkResumeConfig('ckpt', state(before), { ...simpo, 'cpo-alpha': 0.5 })).toThrow(
      /--cpo-alpha \(checkpoint null, now 0.5\)/,
    );
  });

  it("reads --dpo-beta as --beta: a token-loss run's as none, a DPO run's as its value", () => {
    const legacy = { ...without(current, 'beta', 'simpo-gamma'), 'dpo-beta': 0.1 };
    expect(() => checkResumeConfig('ckpt', state(legacy), current)).not.toThrow();
    const dpo = { ...legacy, objective: 'dpo', 'dpo-beta': 0.5 };
    expect(() =>
      checkResumeConfig('ckpt', state(dpo), { ...current, objective: 'dpo', beta: 0.5 }),
    ).not.toThrow();
    expect(() =>
      checkResumeConfig('ckpt', state(dpo), { ...current, objective: 'dpo', beta: 0.1 }),
    ).toThrow(/--beta \(checkpoint 0.5, now 0.1\)/);
  });
});

/** What a run given only --model, --data and --out records (every math option at its default). */
function runConfig(): Record<string, unknown> {
  const o = parseCommand(trainSpec, ['--model', 'x', '--data', 'y', '--out', 'z'], {});
  if (o === 'help') throw new Error('unexpected --help');
  return trainingConfig(o, { rows: 'r', model: 'm' });
}

function without(config: Record<string, unknown>, ...names: string[]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(config).filter(([k]) => !names.includes(k)));
}
