// The training checkpoint format (DESIGN.md, "Formats: Checkpoints" and
// "Faults"): one folder per step, OUT/checkpoints/step-NNNNNN, holding the PEFT
// adapter, optimizer.safetensors (AdamW moments per parameter slot),
// trainer_state.json and manifest.json (sha256 of every other file). A
// checkpoint is built in OUT/checkpoints/.tmp-step-NNNNNN, every file fsynced,
// and renamed into place, so a crash leaves either the whole folder or none.
//
// The writing is split in three so that a distributed run can share it: the
// coordinator starts the folder with its trainer_state.json, rank 0 adds the
// tensors and the manifest (writeCheckpointTensors), the coordinator renames it.
import { createHash } from 'node:crypto';
import { open, readFile, rename, rm, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  type AdamWState,
  type PeftAdapter,
  type TrainableParameters,
  float32Entry,
  loadPeftAdapter,
  readSafetensorsFile,
  savePeftAdapter,
  toFloat32,
  writeFileAtomic,
  writeSafetensorsFile,
} from '@lorafleet/core';
import type { SamplerState } from '@lorafleet/data';
import type { TrainState } from './step.js';

export const CHECKPOINTS_DIR = 'checkpoints';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const TRAINER_STATE_FILE = 'trainer_state.json';
export const MANIFEST_FILE = 'manifest.json';
const FORMAT_VERSION = 1;
const REQUIRED_FILES = [
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  OPTIMIZER_FILE,
  TRAINER_STATE_FILE,
] as const;

/** trainer_state.json: where training stood after `step` optimizer steps. */
export interface TrainerState {
  formatVersion: number;
  step: number;
  epoch: number;
  /** The global sampler's position before step `step + 1`. */
  sampler: SamplerState;
  seed: number;
  /** sha256 of `config`; a resume must compute the same. */
  configHash: string;
  /** The options that change the math, so a mismatch can name them. */
  config: Record<string, unknown>;
  /** The run's planned total steps (the length of a decaying LR schedule). */
  totalSteps: number;
  tokensSeen: number;
  /**
   * Dropout masks are drawn from (seed, step, micro-batch): no generator state
   * is carried between steps, so the step count is the whole RNG state.
   */
  rng: { kind: 'derived'; seed: number; step: number };
}

export interface CheckpointContents {
  adapter: PeftAdapter;
  params: TrainableParameters;
  optimizer: AdamWState;
  state: TrainerState;
}

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

export const checkpointName = (step: number) => `step-${String(step).padStart(6, '0')}`;
export const STEP_DIR = /^step-(\d{6,})$/;

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => null);
  if (!handle) return;
  await handle.sync().catch(() => undefined);
  await handle.close();
}

/** AdamW moments as F32 tensors `<slot>.exp_avg` / `<slot>.exp_avg_sq` (PyTorch's names). */
function optimizerTensors(params: TrainableParameters, optimizer: AdamWState) {
  const tensors = new Map<string, ReturnType<typeof float32Entry>>();
  for (const slot of params.slots) {
    const end = slot.offset + slot.size;
    const shape = slot.variable.shape;
    tensors.set(
      `${slot.name}.exp_avg`,
      float32Entry(optimizer.m.subarray(slot.offset, end), shape),
    );
    tensors.set(
      `${slot.name}.exp_avg_sq`,
      float32Entry(optimizer.v.subarray(slot.offset, end), shape),
    );
  }
  return tensors;
}

/** Whether `dir` is a checkpoint being built: startCheckpoint() put trainer_state.json there. */
export const isCheckpointInProgress = (dir: string) =>
  stat(join(dir, TRAINER_STATE_FILE)).then(
    (s) => s.isFile(),
    () => false,
  );

/** Creates OUT/checkpoints/.tmp-step-NNNNNN holding trainer_state.json; returns its path. */
export async function startCheckpoint(out: string, state: TrainerState): Promise<string> {
  const tmp = join(out, CHECKPOINTS_DIR, `.tmp-${checkpointName(state.step)}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await writeFileAtomic(join(tmp, TRAINER_STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
  return tmp;
}

/**
 * Adds the adapter, optimizer.safetensors and manifest.json to a folder that
 * startCheckpoint() began; returns the sha256 of the manifest written.
 */
export async function writeCheckpointTensors(
  tmp: string,
  c: Omit<CheckpointContents, 'state'>,
): Promise<string> {
  const state = await readTrainerState(tmp);
  await savePeftAdapter(tmp, c.adapter);
  await writeSafetensorsFile(join(tmp, OPTIMIZER_FILE), optimizerTensors(c.params, c.optimizer), {
    format: 'lorafleet-adamw',
    step: String(c.optimizer.step),
  });
  const files: Record<string, { sha256: string; bytes: number }> = {};
  for (const file of REQUIRED_FILES) {
    const bytes = await readFile(join(tmp, file));
    files[file] = { sha256: sha256(bytes), bytes: bytes.byteLength };
  }
  const manifest = `${JSON.stringify({ formatVersion: FORMAT_VERSION, step: state.step, files }, null, 2)}\n`;
  await writeFileAtomic(join(tmp, MANIFEST_FILE), manifest);
  return sha256(Buffer.from(manifest));
}

/** sha256 of a checkpoint folder's manifest.json, to compare with writeCheckpointTensors'. */
export async function manifestSha256(dir: string): Promise<string> {
  return sha256(await readFile(join(dir, MANIFEST_FILE)));
}

/** Renames OUT/checkpoints/.tmp-step-NNNNNN into place; returns the final path. */
export async function commitCheckpoint(out: string, step: number): Promise<string> {
  const root = join(out, CHECKPOINTS_DIR);
  const final = join(root, checkpointName(step));
  await rm(final, { recursive: true, force: true });
  await rename(join(root, `.tmp-${checkpointName(step)}`), final);
  await fsyncDir(root);
  return final;
}

/** Writes OUT/checkpoints/step-NNNNNN atomically and returns its path. */
export async function writeCheckpoint(out: string, c: CheckpointContents): Promise<string> {
  const tmp = await startCheckpoint(out, c.state);
  await writeCheckpointTensors(tmp, c);
  return commitCheckpoint(out, c.state.step);
}

/** Checks a checkpoint folder against its manifest; throws CheckpointError naming the bad file. */
export async function verifyCheckpoint(dir: string): Promise<void> {
  let manifest: { files?: Record<string, { sha256?: string }> };
  try {
    manifest = JSON.parse(await readFile(join(dir, MANIFEST_FILE), 'utf8')) as typeof manifest;
  } catch (err) {
    throw new CheckpointError(
      `${join(dir, MANIFEST_FILE)}: unreadable (${(err as Error).message}); the checkpoint is incomplete`,
    );
  }
  const files = manifest.files ?? {};
  for (const file of REQUIRED_FILES) {
    const expected = files[file]?.sha256;
    if (typeof expected !== 'string')
      throw new CheckpointError(`${join(dir, MANIFEST_FILE)}: lists no checksum for ${file}`);
    const bytes = await readFile(join(dir, file)).catch(() => null);
    if (!bytes) throw new CheckpointError(`${join(dir, file)}: missing`);
    const actual = sha256(bytes);
    if (actual !== expected) {
      throw new CheckpointError(
        `${join(dir, file)}: sha256 ${actual.slice(0, 12)}… does not match the manifest's ${expected.slice(0, 12)}… (modified or corrupt)`,
      );
    }
  }
}

export async function readTrainerState(dir: string): Promise<TrainerState> {
  const state = JSON.parse(await readFile(join(dir, TRAINER_STATE_FILE), 'utf8')) as TrainerState;
  if (state.formatVersion !== FORMAT_VERSION)
    throw new CheckpointError(
      `${join(dir, TRAINER_STATE_FILE)}: format version ${state.formatVersion}, this lorafleet reads ${FORMAT_VERSION}`,
    );
  return state;
}

/** The AdamW state of a verified checkpoint, fused in `params`' slot order. */
export async function readOptimizerState(
  dir: string,
  params: TrainableParameters,
  trainerStep: number,
): Promise<AdamWState> {
  const path = join(dir, OPTIMIZER_FILE);
  const file = await readSafetensorsFile(path);
  const m = new Float32Array(params.size);
  const v = new Float32Array(params.size);
  for (const slot of params.slots) {
    for (const [suffix, into] of [
      ['exp_avg', m],
      ['exp_avg_sq', v],
    ] as const) {
      const name = `${slot.name}.${suffix}`;
      const entry = file.tensors.get(name);
      if (!entry)
        throw new CheckpointError(`${path}: no tensor "${name}"; is it for another model?`);
      const values = toFloat32(entry, name, path);
      if (values.length !== slot.size)
        throw new CheckpointError(
          `${path}: "${name}" has ${values.length} values, the model's slot has ${slot.size}`,
        );
      into.set(values, slot.offset);
    }
  }
  // AdamW's own count: a step skipped for a non-finite gradient does not advance it.
  const step = Number(file.metadata.step);
  if (!Number.isInteger(step) || step < 0 || step > trainerStep)
    throw new CheckpointError(
      `${path}: optimizer step "${file.metadata.step}" is not in [0, ${trainerStep}]`,
    );
  return { step, m, v };
}

/**
 * The parameters and AdamW state of a verified checkpoint, in `params`' slot
 * order: LoRA parameters come from its PEFT adapter, by slot name.
 */
export async function readCheckpointTrainState(
  dir: string,
  params: TrainableParameters,
  trainerStep: number,
): Promise<TrainState> {
  const optimizer = await readOptimizerState(dir, params, trainerStep);
  const adapter = await loadPeftAdapter(dir);
  const values = new Float32Array(params.size);
  for (const slot of params.slots) {
    const match = /^(.*)\.lora_([AB])$/.exec(slot.name);
    const module = match ? adapter.modules.get(match[1]!) : undefined;
    if (!match || !module)
      throw new CheckpointError(`${dir}: the adapter has no weights for parameter "${slot.name}"`);
    const data = match[2] === 'A' ? module.a : module.b;
    if (data.length !== slot.size)
      throw new CheckpointError(
        `${dir}: "${slot.name}" has ${data.length} values, the model's has ${slot.size}`,
      );
    values.set(data, slot.offset);
  }
  return { values, optimizer };
}
