// `train --workers N`: from the command's options to the RunConfig every
// worker receives, plus what the coordinator itself needs (the sampler, the
// schedule, counts for the log). The coordinator reads the model's config and
// tokenizer and prepares the rows (their count drives the sampler, their
// fingerprint lets workers check theirs) but never loads the weights.
import { type BackendName, type PlateauSettings, patternValue } from '@lorafleet/core';
import type { GlobalBatchSampler, SequenceRow } from '@lorafleet/data';
import {
  type ModelConfig,
  loadModelTokenizer,
  fullyTrainedTensors,
  linearParameterCount,
  modelEmbeddingModules,
  modelLinearModules,
  modelParameterCount,
  modelWeightShapes,
  moduleSettings,
  readModelConfig,
  selectPeftModules,
} from '@lorafleet/models';
import {
  type RunConfig,
  documentSpan,
  inputLengths,
  paddedLengths,
  prepareRows,
  rowsFingerprint,
  splitRows,
} from '@lorafleet/worker';
import { UsageError, withValues } from '../args.js';
import { baseDtypeFor } from '../common.js';
import type { TrainOptions } from '../training/train-spec.js';
import { stepOptionsFrom, stepWarnings } from '../training/step-options.js';
import type { MicroBatchMemory } from '../training/micro-batch.js';
import { rowOptionsFrom } from '../training/data-options.js';
import { checkDpoStartAdapter } from '../training/contradictions.js';
import { initAdapterLora, peftLoraFrom } from '../training/peft-options.js';
import { feedbackRows, feedbackSettingsFrom } from '../training/objective-settings.js';
import { type BestModelSettings, bestModelSettings } from '../training/best-model-options.js';
import { plateauSettings } from '../training/lr-plateau.js';
import type { BestMetric } from '../training/best-model.js';

/** A ring frame may wait this long: covers one rank computing a step slower than another. */
const RING_TIMEOUT_MS = 300_000;

export interface RunPlan {
  config: RunConfig;
  modelConfig: ModelConfig;
  backend: BackendName;
  sampler: GlobalBatchSampler;
  steps: number;
  batchSize: number;
  microBatchSize: number;
  /** Held-out rows per forward (--eval-batch-size, else microBatchSize). */
  evalBatchSize: number;
  trainableParameters: number;
  totalParameters: number;
  /** Lines for the log: how the data was read, and its warnings. */
  dataDescription: string;
  warnings: string[];
  /** Held-out rows (--eval-data; 0: none), how they were read, and --eval-every. */
  evalRows: number;
  evalDescription: string | null;
  evalEvery: number;
  /** --checkpoint-every, or --eval-every where --load-best-model-at-end needs it. */
  checkpointEvery: number;
  /** --load-best-model-at-end and --early-stopping-patience; null without them. */
  bestModel: BestModelSettings | null;
  /** --schedule reduce_lr_on_plateau: its settings and the metric it watches; null otherwise. */
  lrPlateau: { settings: PlateauSettings; metric: BestMetric } | null;
  /**
   * [N] each training row's tokens under the attention mask (what TRL's
   * num_tokens counts): a token-loss row's, a preference pair's two
   * sequences', a KTO row's example.
   */
  inputTokens: Uint32Array;
}

/** Option pairs that only make sense with the whole plan in view. */
function checkPlanOptions(o: TrainOptions): void {
  if (o.fullFinetune && (o.resume !== undefined || o.checkpointEvery > 0))
    throw new UsageError('train: --resume and --checkpoint-every need LoRA, not --full-finetune');
  if (o.evalEvery > 0 && o.evalData === undefined && o.evalFraction === 0) {
    throw new UsageError('train: --eval-every needs held-out data: --eval-data or --eval-fraction');
  }
}

/** --eval-strategy and --save-strategy epoch: --eval-every and --checkpoint-every of an epoch's steps. */
function withEpochStrategies(o: TrainOptions, stepsPerEpoch: number): TrainOptions {
  return withValues(o, {
    ...(o.evalStrategy === 'epoch' ? { evalEvery: stepsPerEpoch } : {}),
    ...(o.saveStrategy === 'epoch' ? { checkpointEvery: stepsPerEpoch } : {}),
  });
}

export async function planRun(given: TrainOptions): Promise<RunPlan> {
  let o = given;
  const mode = o.fullFinetune ? 'full' : 'lora';
  const modelDir = o.model;
  const modelConfig = await readModelConfig(modelDir);
  const baseDtype = baseDtypeFor(o.baseDtype, modelConfig, mode === 'full');
  const tokenizer = await loadModelTokenizer(modelDir, modelConfig);
  const objective = feedbackSettingsFrom(o, 'train'); // contradictions.ts refused what it cannot train
  const rows = { ...rowOptionsFrom(o, modelConfig), ...feedbackRows(objective, o.batchSize) };
  const dataFile = o.data;
  const prepared = await prepareRows(dataFile, tokenizer, rows);
  const split = splitRows(prepared.rows, { evalFraction: o.evalFraction, seed: o.seed });
  const evalFile = o.evalData;
  const evalRows = evalFile
    ? await prepareRows(evalFile, tokenizer, rows, '--eval-data')
    : undefined;

  const lora = o.initAdapter ? await initAdapterLora(o) : peftLoraFrom(o, modelConfig);
  checkDpoStartAdapter(o, lora);
  const { trainableParameters, totalParameters } = parameterCounts(o, modelConfig, lora);
  const lengths = paddedLengths(split.train, rows);
  const memory = batchMemory(o, modelConfig, rows, split.train, totalParameters, baseDtype);
  const { batchSize, microBatchSize, sampler, steps, schedule, optimizer, maxGradNorm } =
    stepOptionsFrom(o, lengths, memory);
  o = withEpochStrategies(o, sampler.stepsPerEpoch);
  checkPlanOptions(o);
  const best = bestModelSettings(o);
  const plateau = plateauSettings(o, schedule);
  const config: RunConfig = {
    modelDir,
    dataFile,
    rows,
    mode,
    evalFraction: o.evalFraction,
    rowsFingerprint: rowsFingerprint(prepared.rows),
    evalData:
      evalFile && evalRows
        ? { file: evalFile, rowsFingerprint: rowsFingerprint(evalRows.rows) }
        : null,
    lora,
    optimizer,
    schedule,
    maxGradNorm,
    seed: o.seed,
    ringTimeoutMs: RING_TIMEOUT_MS,
    wireDtype: o.wireDtype,
    resumeFrom: null,
    baseDtype,
    ...optionalSettings(o, objective),
  };
  return {
    config,
    modelConfig,
    backend: o.backend,
    sampler,
    steps,
    batchSize,
    microBatchSize,
    evalBatchSize: o.evalBatchSize ?? microBatchSize,
    trainableParameters,
    totalParameters,
    dataDescription: prepared.description,
    warnings: [
      ...best.warnings,
      ...(plateau?.warnings ?? []),
      ...prepared.warnings,
      ...(evalRows?.warnings ?? []),
      ...stepWarnings(o, lengths),
    ],
    ...heldOutFacts(evalRows, split.held.length, prepared.rows.length),
    evalEvery: o.evalEvery,
    checkpointEvery: best.checkpointEvery,
    bestModel: best.settings,
    lrPlateau: plateau && { settings: plateau.settings, metric: plateau.metric },
    // TRL's num_tokens: a row's tokens under the attention mask (a pair's two sequences').
    inputTokens: inputLengths(split.train, rows),
  };
}

/** What the micro-batch estimate (micro-batch.ts) weighs. */
function batchMemory(
  o: TrainOptions,
  config: ModelConfig,
  rows: RunConfig['rows'],
  train: readonly SequenceRow[],
  parameters: number,
  baseDtype: RunConfig['baseDtype'],
): MicroBatchMemory {
  // Rows packing documents apart; --padding-free makes each padded row a document (of at most seqLen).
  const span =
    documentSpan(train, rows.seqLen) ?? (rows.padding === 'free' ? rows.seqLen : undefined);
  return {
    config,
    seqLen: rows.seqLen,
    ...(span !== undefined ? { documentSpan: span } : {}),
    ...(rows.pairs || rows.kto ? { sequencesPerRow: 2 as const } : {}),
    parameters,
    fullFinetune: o.fullFinetune,
    linearParameters: linearParameterCount(config),
    baseDtype,
    backend: o.backend,
    gradientCheckpointing: o.gradientCheckpointing,
  };
}

/** The RunConfig fields that a run without the option leaves out. */
function optionalSettings(o: TrainOptions, objective: RunConfig['objective'] | null) {
  return {
    ...(o.loraplusLrRatio !== 1 ? { loraplusLrRatio: o.loraplusLrRatio } : {}),
    ...(o.neftuneNoiseAlpha > 0 ? { neftuneAlpha: o.neftuneNoiseAlpha } : {}),
    ...(o.gradientCheckpointing ? { gradientCheckpointing: true } : {}),
    ...(objective ? { objective } : {}),
    ...(o.initAdapter ? { initAdapter: o.initAdapter } : {}),
  };
}

/** The held-out rows' count and description: --eval-data's, or those --eval-fraction split off. */
function heldOutFacts(
  evalRows: { rows: unknown[]; description: string } | undefined,
  split: number,
  rows: number,
): Pick<RunPlan, 'evalRows' | 'evalDescription'> {
  if (evalRows) return { evalRows: evalRows.rows.length, evalDescription: evalRows.description };
  const description = split > 0 ? `${split} of ${rows} rows held out (--eval-fraction)` : null;
  return { evalRows: split, evalDescription: description };
}

/** Trainable and total parameters; refuses a LoRA rank that a target module cannot have. */
function parameterCounts(o: TrainOptions, modelConfig: ModelConfig, lora: RunConfig['lora']) {
  const totalParameters = modelParameterCount(modelConfig);
  if (o.fullFinetune) return { trainableParameters: totalParameters, totalParameters };
  const embeddings = modelEmbeddingModules(modelConfig).map((e) => ({
    ...e,
    inFeatures: e.numEmbeddings,
    outFeatures: e.dim,
  }));
  let chosen: { name: string; inFeatures: number; outFeatures: number }[];
  let whole: { name: string }[];
  const shapes = modelWeightShapes(modelConfig);
  try {
    const picked = selectPeftModules(modelLinearModules(modelConfig), embeddings, lora);
    chosen = [...picked.linears, ...picked.embeddings];
    const tied = embeddings.filter((e) => e.tiedToHead).map((e) => e.name);
    whole = fullyTrainedTensors([...shapes.keys()], new Set(chosen.map((m) => m.name)), lora, tied);
  } catch (error) {
    throw new UsageError(`train: ${(error as Error).message}`);
  }
  let trainableParameters = 0;
  for (const m of chosen) {
    const { r } = moduleSettings(lora, m.name);
    const most = Math.min(m.inFeatures, m.outFeatures);
    if (r > most) {
      const shape = `a ${m.inFeatures} x ${m.outFeatures} module`;
      throw new UsageError(
        patternValue(lora.rankPattern, m.name) === undefined
          ? `train: --lora-r ${r} exceeds the rank ${m.name} (${shape}) can have: use --lora-r <= ${most}`
          : `train: --rank-pattern gives ${m.name} rank ${r}, more than ${shape} can have: use <= ${most} for it`,
      );
    }
    trainableParameters += r * (m.inFeatures + m.outFeatures);
  }
  for (const t of whole) trainableParameters += shapes.get(t.name)!.reduce((a, b) => a * b, 1);
  return { trainableParameters, totalParameters };
}
