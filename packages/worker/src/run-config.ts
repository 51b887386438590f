// What every worker of a run needs to build an identical replica, sent by the
// coordinator in Welcome.runConfig as JSON. The schema lives here, next to the
// code that consumes it, rather than in the .proto: it follows the trainer's
// options, not the wire. The JSON is parsed field by field, so a malformed
// config is refused with the path of the bad field.
import { createHash } from 'node:crypto';
import {
  type BaseDtype,
  BASE_DTYPES,
  LORA_INIT_KINDS,
  type LoraInit,
  type OptimizerSettings,
  type LrSchedule,
  type LoraSettings,
  type PlateauSettings,
  PEFT_BIAS,
  type PeftBias,
  validateLoraSettings,
  SCHEDULE_KINDS,
  validateSchedule,
} from '@lorafleet/core';
import type { FeedbackSettings } from '@lorafleet/models';
import type { LossScope } from '@lorafleet/data';
import type { RowOptions } from './rows.js';
import { Fields, RunConfigError } from './run-config-fields.js';
import { checkObjective, feedbackObjective } from './run-config-objective.js';
import { optimizerSettings } from './run-config-optimizer.js';

export { RunConfigError } from './run-config-fields.js';

export type LoraInitKind = LoraInit['kind'];

/** Element type of the gradients on the ring (`train --wire-dtype`); names as the CLI spells them. */
export type WireDtypeName = 'fp32' | 'bf16' | 'fp16';
export const WIRE_DTYPE_NAMES: readonly WireDtypeName[] = ['fp32', 'bf16', 'fp16'];
/** The collective's name for each: the protocol's WireDtype. */
export const RING_DTYPE: Readonly<Record<WireDtypeName, 'f32' | 'bf16' | 'f16'>> = {
  fp32: 'f32',
  bf16: 'bf16',
  fp16: 'f16',
};
/** Bytes per gradient element on the wire. */
export const WIRE_DTYPE_BYTES: Readonly<Record<WireDtypeName, number>> = {
  fp32: 4,
  bf16: 2,
  fp16: 2,
};

export interface RunConfig {
  /** Base model folder, as the workers see it (absolute: workers may start elsewhere). */
  modelDir: string;
  /** Training data file; every worker prepares the same rows from it. */
  dataFile: string;
  rows: RowOptions;
  /** 'lora' trains adapters on `lora.targets`; 'full' trains every weight and saves a model folder. */
  mode: 'lora' | 'full';
  /**
   * Share of the training rows held out for evaluation (`train --eval-fraction`),
   * split by `seed`; 0: none. The sample ids index the rows that remain.
   */
  evalFraction: number;
  /** rowsFingerprint() of the prepared rows: a worker whose rows differ refuses to train. */
  rowsFingerprint: string;
  /** Held-out data (`train --eval-data`), prepared like the training rows; null: none. */
  evalData: { file: string; rowsFingerprint: string } | null;
  /** LoRA: PEFT's LoraConfig fields; the optional ones are absent when at PEFT's default. */
  lora: LoraSettings & {
    init: LoraInitKind;
    /** init "pissa" by PEFT's pissa_niter_N: a randomized SVD of N power iterations (core's pissaNiter); absent: the full SVD. */
    pissaNiter?: number;
    /** Module names, or one regular expression over whole module paths (PEFT's target_modules). */
    targets: string[] | string;
    layersToTransform?: number[];
    layersPattern?: string[];
    rankPattern?: Record<string, number>;
    alphaPattern?: Record<string, number>;
    modulesToSave?: string[];
    bias?: PeftBias;
  };
  optimizer: OptimizerSettings;
  schedule: LrSchedule;
  /** Global-norm clipping; null turns it off. */
  maxGradNorm: number | null;
  /** Seed of the LoRA initialisation and of dropout. */
  seed: number;
  /** Longest wait for one ring frame: must cover the compute skew between ranks. */
  ringTimeoutMs: number;
  /**
   * Gradients' element type on the ring. bf16/fp16 halve the bytes; every partial and the
   * final sums are rounded to it, the same way on every rank, so replicas stay identical.
   */
  wireDtype: WireDtypeName;
  /**
   * A verified checkpoint folder (as the workers see it) whose parameters and
   * AdamW state every replica loads before its first step; null: a fresh run.
   */
  resumeFrom: string | null;
  /** How each replica stores the frozen W of its linear layers (--base-dtype; LoRA only). */
  baseDtype: BaseDtype;
  /** LoRA+: lora_B and 1-D parameters learn at lr times this (absent: 1, plain AdamW). */
  loraplusLrRatio?: number;
  /** NEFTune: noise on the input embeddings while training, of this alpha (absent: none). */
  neftuneAlpha?: number;
  /** Gradient checkpointing: each layer recomputed in backward (absent: activations kept). */
  gradientCheckpointing?: boolean;
  /**
   * A PEFT adapter folder (as the workers see it) whose values every replica's
   * adapter starts from (--init-adapter; `lora` is its adapter_config.json);
   * absent: `lora.init`.
   */
  initAdapter?: string;
  /**
   * A preference objective on preference pairs (rows.pairs): DPO against the
   * base model with the adapter off, or ORPO, SimPO or CPO without a
   * reference; or KTO on unpaired examples (rows.kto); absent: SFT.
   */
  objective?: FeedbackSettings;
}

/** The Welcome fields that carry a config: the JSON and "sha256:" + its hex digest. */
export function encodeRunConfig(config: RunConfig): { runConfig: string; runConfigHash: string } {
  const runConfig = JSON.stringify(config);
  return { runConfig, runConfigHash: runConfigHash(runConfig) };
}

export function runConfigHash(json: string): string {
  return `sha256:${createHash('sha256').update(json).digest('hex')}`;
}

/** Checks the hash, then every field; throws RunConfigError naming the field. */
export function decodeRunConfig(json: string, hash: string): RunConfig {
  if (runConfigHash(json) !== hash) {
    throw new RunConfigError(
      `the run config does not match its hash ${hash}: corrupted in transit or a mismatched coordinator`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (error) {
    throw new RunConfigError(`the run config is not JSON: ${(error as Error).message}`);
  }
  const c = new Fields(raw, 'runConfig');
  const lora = c.object('lora');
  const schedule = c.object('schedule');
  const config: RunConfig = {
    modelDir: c.string('modelDir'),
    dataFile: c.string('dataFile'),
    rows: rowOptions(c.object('rows')),
    mode: c.choice('mode', ['lora', 'full'] as const),
    evalFraction: c.numberIn('evalFraction', (x) => x >= 0 && x < 1, 'in [0, 1)'),
    rowsFingerprint: c.string('rowsFingerprint'),
    evalData: c.has('evalData')
      ? {
          file: c.object('evalData').string('file'),
          rowsFingerprint: c.object('evalData').string('rowsFingerprint'),
        }
      : null,
    lora: {
      r: lora.int('r', 1),
      alpha: lora.number('alpha'),
      dropout: lora.number('dropout'),
      rslora: lora.boolean('rslora'),
      init: lora.choice('init', LORA_INIT_KINDS),
      ...(lora.has('pissaNiter') ? { pissaNiter: lora.int('pissaNiter', 0) } : {}),
      targets:
        typeof lora.raw.targets === 'string' ? lora.string('targets') : lora.strings('targets'),
      ...peftFields(lora),
    },
    optimizer: optimizerSettings(c.object('optimizer')),
    schedule: lrSchedule(schedule),
    maxGradNorm: c.has('maxGradNorm') ? c.numberIn('maxGradNorm', (x) => x > 0, '> 0') : null,
    seed: c.int('seed', 0, 2 ** 32 - 1),
    ringTimeoutMs: c.numberIn('ringTimeoutMs', (x) => x > 0, '> 0'),
    // Absent from the configs of coordinators older than --wire-dtype: they sent fp32.
    wireDtype: c.has('wireDtype') ? c.choice('wireDtype', WIRE_DTYPE_NAMES) : 'fp32',
    resumeFrom: c.has('resumeFrom') ? c.string('resumeFrom') : null,
    baseDtype: c.has('baseDtype') ? c.choice('baseDtype', BASE_DTYPES) : 'f32',
    ...optionalTrainingFields(c),
  };
  if (config.mode === 'full' && config.baseDtype !== 'f32') {
    throw new RunConfigError(
      `runConfig.baseDtype: ${config.baseDtype} needs mode "lora" (full fine-tuning trains W)`,
    );
  }
  checkObjective(config);
  try {
    validateSchedule(config.schedule);
    validateLoraSettings(config.lora, 'runConfig.lora');
  } catch (error) {
    throw new RunConfigError(`runConfig: ${(error as Error).message}`);
  }
  return config;
}

/** The fields a run config carries only when their option is on: NEFTune, checkpointing, LoRA+, a preference objective, a starting adapter. */
function optionalTrainingFields(
  c: Fields,
): Pick<
  RunConfig,
  'neftuneAlpha' | 'gradientCheckpointing' | 'loraplusLrRatio' | 'objective' | 'initAdapter'
> {
  return {
    ...(c.has('initAdapter') ? { initAdapter: c.string('initAdapter') } : {}),
    ...(c.has('objective') ? { objective: feedbackObjective(c.object('objective')) } : {}),
    ...(c.has('neftuneAlpha')
      ? { neftuneAlpha: c.numberIn('neftuneAlpha', (x) => x > 0, '> 0') }
      : {}),
    ...(c.has('gradientCheckpointing')
      ? { gradientCheckpointing: c.boolean('gradientCheckpointing') }
      : {}),
    ...(c.has('loraplusLrRatio')
      ? { loraplusLrRatio: c.numberIn('loraplusLrRatio', (x) => x > 0, '> 0') }
      : {}),
  };
}

/** LoraConfig's optional fields, each present only when given. */
function peftFields(lora: Fields): Partial<RunConfig['lora']> {
  const out: Partial<RunConfig['lora']> = {};
  if (lora.has('layersToTransform')) {
    const v = lora.raw.layersToTransform;
    if (!Array.isArray(v) || !v.every((i) => Number.isSafeInteger(i) && (i as number) >= 0))
      throw new RunConfigError('runConfig.lora.layersToTransform must be a list of layer indices');
    out.layersToTransform = v as number[];
  }
  if (lora.has('layersPattern')) out.layersPattern = lora.strings('layersPattern');
  if (lora.has('modulesToSave')) out.modulesToSave = lora.strings('modulesToSave');
  if (lora.has('bias')) out.bias = lora.choice('bias', PEFT_BIAS);
  if (lora.has('useDora')) out.useDora = lora.boolean('useDora');
  for (const key of ['rankPattern', 'alphaPattern'] as const) {
    if (!lora.has(key)) continue;
    const p = lora.object(key);
    out[key] = Object.fromEntries(
      Object.keys(p.raw).map((k) => [k, p.numberIn(k, (x) => x > 0, '> 0')]),
    );
  }
  return out;
}

/** The schedule's own fields only, each checked (an unchecked one could make the LR NaN). */
function lrSchedule(s: Fields): LrSchedule {
  const out: LrSchedule = { kind: s.choice('kind', SCHEDULE_KINDS) };
  const ints = ['warmupSteps', 'totalSteps', 'decaySteps', 'stableSteps', 'timescale'] as const;
  for (const key of ints) if (s.has(key)) out[key] = s.int(key, 0);
  const positive = (x: number) => x > 0;
  const share = (x: number) => x >= 0 && x <= 1;
  if (s.has('numCycles')) out.numCycles = s.numberIn('numCycles', positive, '> 0');
  if (s.has('minRatio')) out.minRatio = s.numberIn('minRatio', share, 'in [0, 1]');
  if (s.has('lrEndRatio')) out.lrEndRatio = s.numberIn('lrEndRatio', share, 'in [0, 1]');
  if (s.has('power')) out.power = s.numberIn('power', positive, '> 0');
  const shapes = ['linear', 'cosine', '1-sqrt'] as const;
  if (s.has('warmupType')) out.warmupType = s.choice('warmupType', shapes);
  if (s.has('decayType')) out.decayType = s.choice('decayType', shapes);
  if (s.has('plateau')) out.plateau = plateauSettings(s.object('plateau'));
  return out;
}

/** reduce_lr_on_plateau's settings, each checked (validateSchedule checks their ranges). */
function plateauSettings(p: Fields): PlateauSettings {
  return {
    mode: p.choice('mode', ['min', 'max'] as const),
    factor: p.number('factor'),
    patience: p.int('patience', 0),
    threshold: p.number('threshold'),
    thresholdMode: p.choice('thresholdMode', ['rel', 'abs'] as const),
    cooldown: p.int('cooldown', 0),
    minLr: p.number('minLr'),
    eps: p.number('eps'),
  };
}

/** A CSV dataset's columns: a text column, or prompt and completion columns. */
/** RunConfig.rows, field by field. */
function rowOptions(rows: Fields): RowOptions {
  return {
    seqLen: rows.int('seqLen', 2),
    packing: rows.choice('packing', ['auto', 'pack', 'pad'] as const),
    ...(rows.has('padding')
      ? { padding: rows.choice('padding', ['max_length', 'free'] as const) }
      : {}),
    ...(rows.has('maxBadFraction')
      ? { maxBadFraction: rows.numberIn('maxBadFraction', (x) => x >= 0 && x <= 1, 'in [0, 1]') }
      : {}),
    ...(rows.has('format')
      ? { format: rows.choice('format', ['jsonl', 'csv', 'text'] as const) }
      : {}),
    ...(rows.has('csv') ? { csv: csvColumns(rows.object('csv')) } : {}),
    ...(rows.has('loss') ? { loss: lossScope(rows.object('loss')) } : {}),
    ...(rows.has('truncation')
      ? { truncation: rows.choice('truncation', ['keep_end'] as const) }
      : {}),
    ...(rows.has('packingStrategy')
      ? { packingStrategy: rows.choice('packingStrategy', ['bfd', 'bfd_split'] as const) }
      : {}),
    ...(rows.has('pairs') ? { pairs: rows.boolean('pairs') } : {}),
    ...(rows.has('kto') ? { kto: { klChunk: rows.object('kto').int('klChunk', 1) } } : {}),
  };
}

function lossScope(l: Fields): LossScope {
  return { completionOnly: l.boolean('completionOnly'), assistantOnly: l.boolean('assistantOnly') };
}

function csvColumns(c: Fields): NonNullable<RowOptions['csv']> {
  if (c.has('textColumn')) return { textColumn: c.string('textColumn') };
  const template = c.has('promptTemplate') ? { promptTemplate: c.string('promptTemplate') } : {};
  return {
    promptColumn: c.string('promptColumn'),
    completionColumn: c.string('completionColumn'),
    ...template,
  };
}
