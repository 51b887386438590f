// The training checkpoint format (DESIGN.md, "Formats: Checkpoints" and
// "Faults"): one folder per step, OUT/checkpoints/step-NNNNNN, holding the PEFT
// adapter, optimizer.safetensors (the optimizer's state per parameter slot:
// checkpoint-optimizer.ts),
// trainer_state.json and manifest.json (size and sha256 of every other file).
// A checkpoint is built in OUT/checkpoints/.tmp-step-NNNNNN, every file
// fsynced, and renamed into place, so a crash leaves either the whole folder
// or none. It is read back only through readCheckpoint(), which verifies every
// file against the manifest first (checkpoint-manifest.ts).
//
// The writing is split in three so that a distributed run can share it: the
// coordinator starts the folder with its trainer_state.json, rank 0 adds the
// tensors and the manifest (writeCheckpointTensors), the coordinator renames it.
import { open, readFile, rename, rm, mkdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  type OptimizerSettings,
  type OptimizerState,
  type PlateauState,
  type PeftAdapter,
  type TrainableParameters,
  loadPeftAdapter,
  parseSafetensors,
  peftSlotKey,
  savePeftAdapter,
  toFloat32,
  writeFileAtomic,
  writeSafetensorsFile,
} from '@lorafleet/core';
import type { SamplerState } from '@lorafleet/data';
import {
  CHECKPOINT_FORMAT_VERSION,
  CheckpointError,
  MANIFEST_FILE,
  manifestText,
  readVerifiedFiles,
  sha256Hex,
} from './checkpoint-manifest.js';
import { optimizerStateFrom, optimizerTensors } from './checkpoint-optimizer.js';
import { maybePause } from './fault-injection.js';
import type { TrainState } from './step.js';

export { CheckpointError, MANIFEST_FILE } from './checkpoint-manifest.js';
export const CHECKPOINTS_DIR = 'checkpoints';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const TRAINER_STATE_FILE = 'trainer_state.json';
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
  /**
   * --load-best-model-at-end, --early-stopping-patience: the best value of
   * the held-out metric so far, its step, and the evaluations since that
   * missed by the threshold (transformers' best_metric, best_global_step and
   * EarlyStoppingCallback's counter). Absent without those options.
   */
  bestModel?: BestModelState;
  /**
   * --schedule reduce_lr_on_plateau: ReduceLROnPlateau's state after the
   * evaluations so far (its best, bad epochs, cooldown, and the reductions
   * that took effect). Absent with the other schedules.
   */
  lrPlateau?: StoredPlateau;
}

/** core's PlateauState as JSON holds it: `best` null before the first evaluation (torch's +-inf). */
export type StoredPlateau = Omit<PlateauState, 'best'> & { best: number | null };

/** The best evaluation so far (TrainerState.bestModel). */
export interface BestModelState {
  /** --metric-for-best-model: loss, rewards/accuracies, rewards/margins. */
  metric: string;
  step: number;
  value: number;
  misses: number;
}

export interface CheckpointContents {
  adapter: PeftAdapter;
  params: TrainableParameters;
  /** The run's optimizer, and its state. */
  settings: OptimizerSettings;
  optimizer: OptimizerState;
  state: TrainerState;
}

export const checkpointName = (step: number) => `step-${String(step).padStart(6, '0')}`;
export const STEP_DIR = /^step-(\d{6,})$/;

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => null);
  if (!handle) return;
  await handle.sync().catch(() => undefined);
  await handle.close();
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
  // Test hook: a checkpoint half written (adapter, no optimizer, no manifest).
  await maybePause('checkpoint', state.step);
  const { tensors, metadata } = optimizerTensors(c.params, c.settings, c.optimizer);
  await writeSafetensorsFile(join(tmp, OPTIMIZER_FILE), tensors, metadata);
  // Checksums of the bytes as they are on disk, read back after the fsync.
  const files = new Map<string, Uint8Array>();
  for (const file of REQUIRED_FILES) files.set(file, await readFile(join(tmp, file)));
  const manifest = manifestText(state.step, files);
  await writeFileAtomic(join(tmp, MANIFEST_FILE), manifest);
  return sha256Hex(Buffer.from(manifest));
}

/** sha256 of a checkpoint folder's manifest.json, to compare with writeCheckpointTensors'. */
export async function manifestSha256(dir: string): Promise<string> {
  return sha256Hex(await readFile(join(dir, MANIFEST_FILE)));
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

/** A checkpoint whose every file matched its manifest; its bytes are the only ones a resume uses. */
export interface VerifiedCheckpoint {
  dir: string;
  state: TrainerState;
  /** The verified bytes of each file the manifest lists, by name. */
  files: ReadonlyMap<string, Uint8Array>;
}

const isRecord = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x);
const isCount = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;

const isBestModel = (b: unknown) =>
  isRecord(b) &&
  typeof b.metric === 'string' &&
  isCount(b.step) &&
  typeof b.value === 'number' &&
  isCount(b.misses);

const isPlateauState = (p: unknown) =>
  isRecord(p) &&
  (p.best === null || typeof p.best === 'number') &&
  isCount(p.badEpochs) &&
  isCount(p.cooldownCounter) &&
  isCount(p.reductions);

/** trainer_state.json's fields, checked; throws CheckpointError naming the bad one. */
export function parseTrainerState(bytes: Uint8Array, source: string): TrainerState {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    throw new CheckpointError(`${source}: not valid JSON (${(err as Error).message})`);
  }
  const s = (isRecord(json) ? json : {}) as Partial<TrainerState>;
  if (s.formatVersion !== CHECKPOINT_FORMAT_VERSION)
    throw new CheckpointError(
      `${source}: format version ${JSON.stringify(s.formatVersion)}, this lorafleet reads ${CHECKPOINT_FORMAT_VERSION}`,
    );
  const checks: [string, boolean][] = [
    ['step', isCount(s.step)],
    ['epoch', typeof s.epoch === 'number' && s.epoch >= 0],
    ['sampler', isRecord(s.sampler) && isCount(s.sampler.epoch) && isCount(s.sampler.cursor)],
    ['seed', isCount(s.seed)],
    ['configHash', typeof s.configHash === 'string'],
    ['config', isRecord(s.config)],
    ['totalSteps', isCount(s.totalSteps)],
    ['tokensSeen', isCount(s.tokensSeen)],
    ['rng', isRecord(s.rng) && s.rng.kind === 'derived'],
    ['bestModel', s.bestModel === undefined || isBestModel(s.bestModel)],
    ['lrPlateau', s.lrPlateau === undefined || isPlateauState(s.lrPlateau)],
  ];
  const bad = checks.find(([, ok]) => !ok)?.[0];
  if (bad !== undefined)
    throw new CheckpointError(
      `${source}: "${bad}" is ${JSON.stringify(s[bad as keyof TrainerState])}`,
    );
  return s as TrainerState;
}

/**
 * Reads a checkpoint folder, verifying every file against manifest.json
 * (size and sha256; missing, extra or damaged files, a damaged manifest) and
 * the step against trainer_state.json and the folder's name. Throws one
 * CheckpointError naming each bad file.
 */
export async function readCheckpoint(dir: string): Promise<VerifiedCheckpoint> {
  const { manifest, files } = await readVerifiedFiles(dir, REQUIRED_FILES);
  const state = parseTrainerState(files.get(TRAINER_STATE_FILE)!, join(dir, TRAINER_STATE_FILE));
  if (state.step !== manifest.step)
    throw new CheckpointError(
      `${dir}: ${TRAINER_STATE_FILE} is at step ${state.step}, ${MANIFEST_FILE} at step ${manifest.step}`,
    );
  const named = STEP_DIR.exec(basename(dir))?.[1];
  if (named !== undefined && Number(named) !== manifest.step)
    throw new CheckpointError(
      `${dir}: holds step ${manifest.step}, not the step its name says (a renamed folder?)`,
    );
  return { dir, state, files };
}

/**
 * A checkpoint's PEFT adapter, every file verified against its manifest
 * first (the best evaluated step's, which --load-best-model-at-end saves).
 */
export async function readCheckpointAdapter(dir: string): Promise<PeftAdapter> {
  await readCheckpoint(dir);
  return loadPeftAdapter(dir);
}

/** Checks a checkpoint folder against its manifest; throws CheckpointError naming the bad files. */
export async function verifyCheckpoint(dir: string): Promise<void> {
  await readCheckpoint(dir);
}

/**
 * trainer_state.json of a folder, unverified: for a checkpoint being built.
 * A resume reads it through readCheckpoint().
 */
export async function readTrainerState(dir: string): Promise<TrainerState> {
  const path = join(dir, TRAINER_STATE_FILE);
  const bytes = await readFile(path).catch((err: Error) => {
    throw new CheckpointError(`${path}: unreadable (${err.message})`);
  });
  return parseTrainerState(bytes, path);
}

/** A verified checkpoint: `source` itself, or the folder it names, read and verified. */
async function verified(
  source: string | VerifiedCheckpoint,
  trainerStep: number | undefined,
): Promise<VerifiedCheckpoint> {
  const c = typeof source === 'string' ? await readCheckpoint(source) : source;
  if (trainerStep !== undefined && c.state.step !== trainerStep)
    throw new CheckpointError(
      `${c.dir}: holds step ${c.state.step}, expected step ${trainerStep} (was it replaced meanwhile?)`,
    );
  return c;
}

/** The optimizer state of a checkpoint, fused in `params`' slot order (verified first). */
export async function readOptimizerState(
  source: string | VerifiedCheckpoint,
  params: TrainableParameters,
  settings: OptimizerSettings,
  trainerStep?: number,
): Promise<OptimizerState> {
  const c = await verified(source, trainerStep);
  const path = join(c.dir, OPTIMIZER_FILE);
  return optimizerStateFrom(c.files.get(OPTIMIZER_FILE)!, path, params, settings, c.state.step);
}

/**
 * The parameters and optimizer state of a checkpoint (verified first), in
 * `params`' slot order: LoRA parameters come from its PEFT adapter weights, by
 * slot name (peftSlotKey: "<module>.lora_A" -> "base_model.model.<module>.lora_A.weight").
 */
export async function readCheckpointTrainState(
  source: string | VerifiedCheckpoint,
  params: TrainableParameters,
  settings: OptimizerSettings,
  trainerStep?: number,
): Promise<TrainState> {
  const c = await verified(source, trainerStep);
  const optimizer = await readOptimizerState(c, params, settings);
  const path = join(c.dir, ADAPTER_WEIGHTS_FILE);
  const values = adapterValues(c.files.get(ADAPTER_WEIGHTS_FILE)!, path, params);
  return { values, optimizer };
}

/**
 * A PEFT adapter folder's weights in `params`' slot order (--init-adapter:
 * training starts from them); every slot must be there, with its shape.
 */
export async function readAdapterValues(
  dir: string,
  params: TrainableParameters,
): Promise<Float32Array> {
  const path = join(dir, ADAPTER_WEIGHTS_FILE);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new CheckpointError(
      `${path}: cannot read the adapter's weights (${(error as Error).message})`,
    );
  }
  return adapterValues(bytes, path, params);
}

function adapterValues(bytes: Uint8Array, path: string, params: TrainableParameters): Float32Array {
  const weights = parseSafetensors(bytes, path);
  const values = new Float32Array(params.size);
  for (const slot of params.slots) {
    const key = peftSlotKey(slot.name);
    const entry = weights.tensors.get(key);
    if (!entry)
      throw new CheckpointError(`${path}: the adapter has no weights for parameter "${slot.name}"`);
    const shape = slot.variable.shape;
    if (entry.shape.join() !== shape.join())
      throw new CheckpointError(
        `${path}: "${key}" is [${entry.shape.join(', ')}], the model's "${slot.name}" is [${shape.join(', ')}]`,
      );
    values.set(toFloat32(entry, key, path), slot.offset);
  }
  return values;
}
