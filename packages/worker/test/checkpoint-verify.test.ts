// Checkpoint verification: every kind of damage to a checkpoint folder (a
// missing, extra, truncated, grown or bit-flipped file; a damaged, truncated
// or rewritten manifest; a renamed folder) is caught before a byte is used,
// with an error naming the file; and every single-bit flip anywhere in the
// manifest is caught.
import {
  appendFile,
  cp,
  mkdir,
  mkdtemp,
  readFile,
  rm,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEFAULT_OPTIMIZER as ADAMW,
  type PeftAdapter,
  TrainableParameters,
  tf,
  useBackend,
} from '@lorafleet/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CheckpointError,
  type FoundEntry,
  MANIFEST_FILE,
  OPTIMIZER_FILE,
  TRAINER_STATE_FILE,
  type TrainerState,
  fileProblems,
  manifestText,
  parseManifest,
  parseTrainerState,
  readCheckpoint,
  readCheckpointTrainState,
  writeCheckpoint,
} from '../src/index.js';

const WEIGHTS = 'adapter_model.safetensors';
const CONFIG = 'adapter_config.json';
const REQUIRED = [CONFIG, WEIGHTS, OPTIMIZER_FILE, TRAINER_STATE_FILE];

let root: string;
let good: string;
let params: TrainableParameters;

// One module "m" with r = 2, in = 3, out = 4.
const a = Float32Array.from({ length: 6 }, (_, i) => i / 7);
const b = Float32Array.from({ length: 8 }, (_, i) => -i / 9);
const adapter: PeftAdapter = {
  config: {
    r: 2,
    loraAlpha: 4,
    loraDropout: 0,
    targetModules: ['m'],
    fanInFanOut: false,
    useRslora: false,
    bias: 'none',
    initLoraWeights: true,
    baseModelNameOrPath: null,
    taskType: 'CAUSAL_LM',
  },
  modules: new Map([['m', { a, b, r: 2, inFeatures: 3, outFeatures: 4 }]]),
};

const state = (step: number): TrainerState => ({
  formatVersion: 1,
  step,
  epoch: step / 10,
  sampler: { epoch: 0, cursor: step * 2 },
  seed: 7,
  configHash: 'x',
  config: {},
  totalSteps: 20,
  tokensSeen: step * 100,
  rng: { kind: 'derived', seed: 7, step },
});

let copies = 0;
/** A fresh copy of the good checkpoint, as OUT/checkpoints/step-000005. */
async function copy(): Promise<string> {
  const dir = join(root, `copy-${copies++}`, 'checkpoints', 'step-000005');
  await cp(good, dir, { recursive: true });
  return dir;
}

async function flipBit(path: string, at: (length: number) => number, bit = 0): Promise<void> {
  const bytes = await readFile(path);
  bytes[at(bytes.length)]! ^= 1 << bit;
  await writeFile(path, bytes);
}

/** The CheckpointError message of reading `dir`, which must fail. */
async function rejection(dir: string): Promise<string> {
  const err = await readCheckpoint(dir).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CheckpointError);
  return (err as Error).message;
}

beforeAll(async () => {
  await useBackend('cpu');
  root = await mkdtemp(join(tmpdir(), 'lorafleet-ckpt-verify-'));
  params = new TrainableParameters([
    ['m.lora_A', tf.variable(tf.tensor2d(a, [2, 3]))],
    ['m.lora_B', tf.variable(tf.tensor2d(b, [4, 2]))],
  ]);
  const m = Float32Array.from({ length: params.size }, (_, i) => i / 3);
  const v = Float32Array.from({ length: params.size }, (_, i) => i + 0.1);
  good = await writeCheckpoint(join(root, 'good'), {
    adapter,
    params,
    settings: ADAMW,
    optimizer: { step: 5, buffers: { exp_avg: m, exp_avg_sq: v } },
    state: state(5),
  });
});

afterAll(() => rm(root, { recursive: true, force: true }));

describe('readCheckpoint on an intact checkpoint', () => {
  it('returns the trainer state and the verified bytes of every listed file', async () => {
    const c = await readCheckpoint(good);
    expect(c.state).toEqual(state(5));
    expect([...c.files.keys()].sort()).toEqual([...REQUIRED].sort());
    const restored = await readCheckpointTrainState(c, params, ADAMW, 5);
    expect(restored.values).toEqual(Float32Array.from([...a, ...b]));
    expect(restored.optimizer.step).toBe(5);
    expect(restored.optimizer.buffers.exp_avg_sq![13]).toBe(Math.fround(13.1));
  });
});

describe('readCheckpoint refuses damage, naming the file', () => {
  const cases: [string, (dir: string) => Promise<void>, RegExp][] = [
    [
      'a bit flipped in the adapter weights',
      (d) => flipBit(join(d, WEIGHTS), (n) => n - 3),
      /adapter_model\.safetensors: sha256 \w+… differs from the manifest's \w+… \(modified or corrupt\)/,
    ],
    [
      'a bit flipped in the safetensors header of the optimizer state',
      (d) => flipBit(join(d, OPTIMIZER_FILE), () => 20, 1),
      /optimizer\.safetensors: sha256 .* \(modified or corrupt\)/,
    ],
    [
      'a truncated file',
      (d) => truncate(join(d, WEIGHTS), 100),
      /adapter_model\.safetensors: 100 bytes, the manifest lists \d+ \(truncated\)/,
    ],
    [
      'an empty file',
      (d) => truncate(join(d, TRAINER_STATE_FILE), 0),
      /trainer_state\.json: 0 bytes, .*\(truncated\)/,
    ],
    [
      'a grown file',
      (d) => appendFile(join(d, CONFIG), ' '),
      /adapter_config\.json: \d+ bytes, the manifest lists \d+ \(grown\)/,
    ],
    ['a missing file', (d) => rm(join(d, OPTIMIZER_FILE)), /optimizer\.safetensors: missing/],
    [
      'an extra file',
      (d) => writeFile(join(d, 'notes.txt'), 'hi'),
      /notes\.txt: not in the manifest \(an extra file\)/,
    ],
    [
      'a folder where a file should be',
      async (d) => {
        await rm(join(d, CONFIG));
        await mkdir(join(d, CONFIG));
      },
      /adapter_config\.json: not a regular file/,
    ],
    [
      'a missing manifest (a partial checkpoint)',
      (d) => rm(join(d, MANIFEST_FILE)),
      /manifest\.json: missing; the checkpoint is incomplete/,
    ],
    [
      'a truncated manifest',
      (d) => truncate(join(d, MANIFEST_FILE), 40),
      /manifest\.json: not valid JSON .*the manifest is damaged/,
    ],
    [
      'a manifest without its final newline',
      async (d) => {
        const text = await readFile(join(d, MANIFEST_FILE), 'utf8');
        await writeFile(join(d, MANIFEST_FILE), text.trimEnd());
      },
      /manifest\.json: its text differs from what its writer produces/,
    ],
    [
      'a manifest that lists no trainer state',
      async (d) => {
        const m = JSON.parse(await readFile(join(d, MANIFEST_FILE), 'utf8')) as {
          files: Record<string, unknown>;
        };
        delete m.files[TRAINER_STATE_FILE];
        await writeFile(join(d, MANIFEST_FILE), `${JSON.stringify(m, null, 2)}\n`);
      },
      /manifest\.json: lists no trainer_state\.json/,
    ],
    [
      'a manifest pointing outside its folder',
      async (d) => {
        const text = await readFile(join(d, MANIFEST_FILE), 'utf8');
        await writeFile(join(d, MANIFEST_FILE), text.replace('"adapter_config.json"', '"../x"'));
      },
      /manifest\.json: lists a bad file name "\.\.\/x"/,
    ],
    [
      'a file and its manifest entry rewritten to match, but for another step',
      async (d) => {
        // A coherent manifest over a trainer state of another step: caught by the step check.
        const s = { ...state(5), step: 6 };
        await writeFile(join(d, TRAINER_STATE_FILE), `${JSON.stringify(s, null, 2)}\n`);
        const files = new Map<string, Uint8Array>();
        for (const f of REQUIRED) files.set(f, await readFile(join(d, f)));
        await writeFile(join(d, MANIFEST_FILE), manifestText(5, files));
      },
      /trainer_state\.json is at step 6, manifest\.json at step 5/,
    ],
  ];

  for (const [what, damage, expected] of cases) {
    it(what, async () => {
      const dir = await copy();
      await damage(dir);
      const message = await rejection(dir);
      expect(message).toMatch(expected);
      expect(message).toContain(dir);
      // Nothing reads around the verification.
      await expect(readCheckpointTrainState(dir, params, ADAMW)).rejects.toThrow(CheckpointError);
    });
  }

  it('names every bad file at once', async () => {
    const dir = await copy();
    await flipBit(join(dir, WEIGHTS), () => 0);
    await rm(join(dir, CONFIG));
    const message = await rejection(dir);
    expect(message).toMatch(/adapter_config\.json: missing; adapter_model\.safetensors: sha256/);
  });

  it('a checkpoint folder renamed to another step', async () => {
    const dir = join(root, 'renamed', 'step-000007');
    await cp(good, dir, { recursive: true });
    expect(await rejection(dir)).toMatch(/holds step 5, not the step its name says/);
  });

  it('a trainer state of another step than the caller expects', async () => {
    await expect(readCheckpointTrainState(good, params, ADAMW, 4)).rejects.toThrow(
      /holds step 5, expected step 4/,
    );
  });
});

describe('the manifest under every single-bit flip', () => {
  it('rejects each one (files, sizes, checksums, names, step, version and form)', async () => {
    const text = await readFile(join(good, MANIFEST_FILE));
    const found = new Map<string, FoundEntry>();
    for (const f of REQUIRED) {
      const bytes = new Uint8Array(await readFile(join(good, f)));
      found.set(f, { kind: 'file', size: bytes.length, bytes });
    }
    const savedStep = parseTrainerState(await readFile(join(good, TRAINER_STATE_FILE)), 'x').step;
    const stateOf = (m: { step: number }) => m.step === savedStep;
    const intact = parseManifest(text, 'manifest.json', REQUIRED);
    expect([fileProblems(intact, found), stateOf(intact)]).toEqual([[], true]);
    const accepted: string[] = [];
    for (let at = 0; at < text.length; at++) {
      for (let bit = 0; bit < 8; bit++) {
        const flipped = Uint8Array.from(text);
        flipped[at]! ^= 1 << bit;
        try {
          const m = parseManifest(flipped, 'manifest.json', REQUIRED);
          if (fileProblems(m, found).length === 0 && stateOf(m)) accepted.push(`${at}:${bit}`);
        } catch (err) {
          if (!(err instanceof CheckpointError)) throw err;
        }
      }
    }
    expect(text.length).toBeGreaterThan(400);
    expect(accepted).toEqual([]);
  });
});
