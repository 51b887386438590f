// Resuming `lorafleet train` from a checkpoint: which options must match (the
// ones marked `affects: 'math'` in the spec), how a mismatch is reported, and
// which checkpoint to start from. Each worker restores the parameters and
// AdamW state itself from the folder named in its RunConfig.
import { createHash } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LrSchedule } from '@lorafleet/core';
import { DEFAULT_SIMPO_GAMMA } from '@lorafleet/models';
import type { SamplerState } from '@lorafleet/data';
import { UsageError, camelCase, mathOptions } from '../args.js';
import type { TrainOptions } from './train-spec.js';
import { type TrainerState, type VerifiedCheckpoint, resumeCheckpoint } from './checkpoint.js';
import { trainSpec } from './train-spec.js';
import { resolvedBeta, resolvedCpoAlpha } from './objective-settings.js';
import { OPTIM_NAMES } from './optimizer-options.js';
import { optimName } from './optimizer-settings.js';

/** Content hashes of the inputs, so a changed file is caught even under the same name. */
export interface RunInputs {
  /** sha256 of the training rows after tokenization and packing. */
  rows: string;
  /** sha256 of the base model's config.json and weight files. */
  model: string;
}

/** The math-relevant configuration, keyed by option name ('model' and 'data' are content hashes). */
export function trainingConfig(o: TrainOptions, inputs: RunInputs): Record<string, unknown> {
  const config: Record<string, unknown> = { model: inputs.model, data: inputs.rows };
  const values = o as unknown as Record<string, unknown>;
  for (const name of mathOptions(trainSpec)) {
    const resolve = RESOLVED[name];
    config[name] = resolve ? resolve(o) : (values[camelCase(name)] ?? null);
  }
  return config;
}

/** Options recorded as the run resolves them, so giving the default or leaving it out is one run. */
const RESOLVED: Record<string, (o: TrainOptions) => unknown> = {
  'micro-batch-size': (o) => o.microBatchSize ?? o.batchSize,
  beta: resolvedBeta,
  'cpo-alpha': resolvedCpoAlpha,
  // The optimizer, not its name: adamw_torch_fused trains what adamw_torch does.
  optim: (o) => OPTIM_NAMES[optimName(o.optim)].kind,
};

export function configHash(config: Record<string, unknown>): string {
  const canonical = JSON.stringify(
    Object.keys(config)
      .sort()
      .map((k) => [k, config[k]]),
  );
  return createHash('sha256').update(canonical).digest('hex');
}

/** sha256 over config.json and the *.safetensors files of a model folder, in name order. */
export async function modelFingerprint(dir: string): Promise<string> {
  const names = (await readdir(dir))
    .filter((n) => n === 'config.json' || n.endsWith('.safetensors'))
    .sort();
  const hash = createHash('sha256');
  for (const name of names) hash.update(name).update(await readFile(join(dir, name)));
  return hash.digest('hex');
}

/**
 * Math options added after checkpoints were already written without them,
 * with the value those checkpoints trained with: what a run that does not
 * give the option records, which is how every run trained before it existed
 * (before --wire-dtype, gradients travelled in fp32; before --objective, every
 * run trained the token loss; before PEFT's options, DoRA, LoRA+ and NEFTune,
 * none was on). A new math option whose default changes nothing joins this
 * list; one whose default differs from what came before (--padding) joins it
 * with the old behaviour, so an older checkpoint resumes exactly with that
 * value given and is refused, naming it, without.
 */
const ADDED_LATER: Record<string, unknown> = {
  'wire-dtype': 'fp32',
  'target-regex': null,
  'layers-to-transform': null,
  'layers-pattern': null,
  'rank-pattern': null,
  'alpha-pattern': null,
  'modules-to-save': null,
  'lora-bias': 'none',
  'use-dora': false,
  'loraplus-lr-ratio': 1,
  'neftune-noise-alpha': 0,
  objective: 'sft',
  beta: null,
  'dpo-loss': 'sigmoid',
  'dpo-label-smoothing': 0,
  'simpo-gamma': DEFAULT_SIMPO_GAMMA,
  'cpo-loss': 'sigmoid',
  'cpo-alpha': null,
  'init-adapter': null,
  'dpo-loss-weights': null,
  'f-divergence': 'reverse_kl',
  'f-alpha': null,
  'discopop-tau': null,
  'ld-alpha': null,
  'use-weighting': false,
  'cpo-label-smoothing': 0,
  'alphapo-alpha': 0,
  'kto-loss': 'kto',
  'desirable-weight': 1,
  'undesirable-weight': 1,
  'completion-only-loss': true,
  'assistant-only-loss': true,
  'truncation-mode': 'keep_start',
  'packing-strategy': 'wrapped',
  // Before --padding, every padded row was padded to --seq-len.
  padding: 'max_length',
  'padding-free': false,
  'train-sampling-strategy': 'random',
  // Before these options, AdamW ran with torch's defaults.
  'adam-beta1': 0.9,
  'adam-beta2': 0.999,
  'adam-epsilon': 1e-8,
  'lr-scheduler-kwargs': null,
  'data-seed': null,
  'dataloader-drop-last': false,
  // Before --optim chose among optimizers, every run trained with AdamW.
  optim: 'adamw',
  'optim-args': null,
};

/** Math options renamed since: the old name, the new one, and the old value as the new option records it. */
const RENAMED: {
  from: string;
  to: string;
  value: (v: unknown, c: Record<string, unknown>) => unknown;
}[] = [
  // --dpo-beta (2026-12-06) became --beta for every preference objective, null for the token loss.
  { from: 'dpo-beta', to: 'beta', value: (v, c) => (c.objective === 'dpo' ? v : null) },
];

/** A checkpoint's config with renamed options renamed and the options it predates filled in as it trained. */
export function savedConfig(saved: TrainerState): Record<string, unknown> {
  const config = { ...saved.config };
  for (const { from, to, value } of RENAMED) {
    if (!(from in config) || to in config) continue;
    config[to] = value(config[from], config);
    delete config[from];
  }
  for (const [name, value] of Object.entries(ADDED_LATER))
    if (!(name in config)) config[name] = value;
  return config;
}

/** Refuses a resume whose math options differ from the checkpoint's, naming each one. */
export function checkResumeConfig(
  checkpoint: string,
  saved: TrainerState,
  current: Record<string, unknown>,
): void {
  if (saved.configHash === configHash(current)) return;
  // An older checkpoint: its hash covers its own config, which lacks the later options.
  const filled = savedConfig(saved);
  if (saved.configHash === configHash(saved.config) && configHash(filled) === configHash(current))
    return;
  const show = (v: unknown) =>
    typeof v === 'string' && v.length === 64 ? 'content' : JSON.stringify(v);
  const keys = [...new Set([...Object.keys(filled), ...Object.keys(current)])];
  const changed = keys
    .filter((k) => JSON.stringify(filled[k] ?? null) !== JSON.stringify(current[k] ?? null))
    .map((k) =>
      k === 'model' || k === 'data'
        ? `--${k} (its ${show(current[k])} differs from the checkpoint's)`
        : `--${k} (checkpoint ${show(filled[k])}, now ${show(current[k])})`,
    );
  throw new UsageError(
    `train: cannot resume from ${checkpoint}: options that change the training differ: ` +
      `${changed.length > 0 ? changed.join('; ') : 'the configuration hash'}. ` +
      "Run with the checkpoint's values, or start a new run without --resume.",
  );
}

export interface ResumePoint {
  /** The checkpoint folder used. */
  dir: string;
  /** Its files, verified against its manifest: what the resume reads. */
  checkpoint: VerifiedCheckpoint;
  step: number;
  sampler: SamplerState;
  tokensSeen: number;
}

/**
 * Finds the checkpoint to resume from (the folder named, or the newest one
 * under a run folder that verifies against its manifest, each one skipped
 * reported through `warn`) and checks it against this run: the math options,
 * --steps, the schedule. One worker or many, the same rules.
 */
export async function pickResumePoint(
  from: string,
  run: {
    config: Record<string, unknown>;
    steps: number;
    schedule: LrSchedule;
    warn: (line: string) => void;
  },
): Promise<ResumePoint> {
  const checkpoint = await resumeCheckpoint(from, run.warn);
  const { dir, state: saved } = checkpoint;
  checkResumeConfig(dir, saved, run.config);
  if (saved.step > run.steps)
    throw new UsageError(
      `train: --steps ${run.steps} is below the checkpoint's step ${saved.step} (${dir}); --steps may only be raised`,
    );
  if (run.schedule.kind !== 'constant' && saved.totalSteps !== run.steps)
    run.warn(
      `the ${run.schedule.kind} schedule now decays over ${run.steps} steps, not ${saved.totalSteps}: ` +
        'the result will differ from a run that planned them from the start',
    );
  return {
    dir,
    checkpoint,
    step: saved.step,
    sampler: saved.sampler,
    tokensSeen: saved.tokensSeen,
  };
}

/** The series a run's summary covers, step by step (a resumed run's include its earlier steps). */
export interface TrainSeries {
  losses: number[];
  /** A preference run's training reward accuracy (empty for the token loss). */
  rewardAccuracies: number[];
}

/**
 * Drops metrics lines past `step` (written after the checkpoint by the run
 * that stopped); returns the kept lines' series, and the last kept line's
 * numTokens (TRL's num_tokens so far: 0 with no line kept, null where the
 * lines predate it).
 */
export async function trimMetrics(
  path: string,
  step: number,
): Promise<TrainSeries & { numTokens: number | null }> {
  const text = await readFile(path, 'utf8').catch(() => '');
  type Kept = { line: string; loss: number; rewardAccuracy?: number; numTokens?: number };
  const kept: Kept[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const m = JSON.parse(line) as Omit<Kept, 'line'> & { step?: number };
      if (m.step! <= step) kept.push({ ...m, line, loss: m.loss ?? NaN });
    } catch {
      // a torn last line (the run was killed mid-write): dropped
    }
  }
  await writeFile(path, kept.map((k) => `${k.line}\n`).join(''));
  const last = kept.at(-1);
  return {
    losses: kept.map((k) => k.loss),
    rewardAccuracies: kept.flatMap((k) =>
      k.rewardAccuracy === undefined ? [] : [k.rewardAccuracy],
    ),
    numTokens: last === undefined ? 0 : (last.numTokens ?? null),
  };
}
