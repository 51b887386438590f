// `train --workers N`: from the command's options to the RunConfig every
// worker receives, plus what the coordinator itself needs (the sampler, the
// schedule, counts for the log). The coordinator reads the model's config and
// tokenizer and prepares the rows (their count drives the sampler, their
// fingerprint lets workers check theirs) but never loads the weights.
import type { BackendName } from '@lorafleet/core';
import type { GlobalBatchSampler } from '@lorafleet/data';
import {
  type ModelConfig,
  loadModelTokenizer,
  modelLinearModules,
  modelParameterCount,
  readModelConfig,
  selectTargets,
} from '@lorafleet/models';
import { type RunConfig, prepareRows, rowsFingerprint, splitRows } from '@lorafleet/worker';
import { UsageError } from '../args.js';
import type { TrainOptions } from '../training/train-spec.js';
import { stepOptionsFrom } from '../training/step-options.js';
import { rowOptionsFrom } from '../training/data-options.js';

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
  trainableParameters: number;
  totalParameters: number;
  /** Lines for the log: how the data was read, and its warnings. */
  dataDescription: string;
  warnings: string[];
  /** Held-out rows (--eval-data; 0: none), how they were read, and --eval-every. */
  evalRows: number;
  evalDescription: string | null;
  evalEvery: number;
}

export async function planRun(o: TrainOptions): Promise<RunPlan> {
  const mode = o.fullFinetune ? 'full' : 'lora';
  if (mode === 'full' && (o.resume !== undefined || o.checkpointEvery > 0))
    throw new UsageError('train: --resume and --checkpoint-every need LoRA, not --full-finetune');
  if (o.evalEvery > 0 && o.evalData === undefined && o.evalFraction === 0) {
    throw new UsageError('train: --eval-every needs held-out data: --eval-data or --eval-fraction');
  }
  const modelDir = o.model;
  const modelConfig = await readModelConfig(modelDir);
  const tokenizer = await loadModelTokenizer(modelDir, modelConfig);
  const rows = rowOptionsFrom(o, modelConfig.contextLength);
  const dataFile = o.data;
  const prepared = await prepareRows(dataFile, tokenizer, rows);
  const split = splitRows(prepared.rows, { evalFraction: o.evalFraction, seed: o.seed });
  const evalFile = o.evalData;
  const evalRows = evalFile
    ? await prepareRows(evalFile, tokenizer, rows, '--eval-data')
    : undefined;

  const { trainableParameters, totalParameters } = parameterCounts(o, modelConfig);
  const seed = o.seed;
  const { batchSize, microBatchSize, sampler, steps, schedule, optimizer, maxGradNorm } =
    stepOptionsFrom(o, split.train.length, {
      config: modelConfig,
      seqLen: rows.seqLen,
      parameters: totalParameters,
      fullFinetune: mode === 'full',
      backend: o.backend,
    });
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
    lora: {
      r: o.loraR,
      alpha: o.loraAlpha,
      dropout: o.loraDropout,
      rslora: o.rslora,
      init: o.init,
      targets: o.target,
    },
    optimizer,
    schedule,
    maxGradNorm,
    seed,
    ringTimeoutMs: RING_TIMEOUT_MS,
    wireDtype: o.wireDtype,
    resumeFrom: null,
    baseDtype: o.baseDtype,
  };
  return {
    config,
    modelConfig,
    backend: o.backend,
    sampler,
    steps,
    batchSize,
    microBatchSize,
    trainableParameters,
    totalParameters,
    dataDescription: prepared.description,
    warnings: [...prepared.warnings, ...(evalRows?.warnings ?? [])],
    evalRows: evalRows?.rows.length ?? split.held.length,
    evalDescription:
      evalRows?.description ??
      (split.held.length > 0
        ? `${split.held.length} of ${prepared.rows.length} rows held out (--eval-fraction)`
        : null),
    evalEvery: o.evalEvery,
  };
}

/** Trainable and total parameters; refuses a LoRA rank that a target module cannot have. */
function parameterCounts(o: TrainOptions, modelConfig: ModelConfig) {
  const totalParameters = modelParameterCount(modelConfig);
  if (o.fullFinetune) return { trainableParameters: totalParameters, totalParameters };
  const r = o.loraR;
  const adapted = selectTargets(modelLinearModules(modelConfig), o.target);
  const rankOf = (m: (typeof adapted)[number]) => Math.min(m.inFeatures, m.outFeatures);
  const narrowest = adapted.reduce((a, m) => (rankOf(m) < rankOf(a) ? m : a), adapted[0]!);
  if (r > rankOf(narrowest)) {
    throw new UsageError(
      `train: --lora-r ${r} exceeds the rank a ${narrowest.inFeatures} x ${narrowest.outFeatures} module can have ` +
        `(${narrowest.name}, one of --target ${o.target.join(',')}): use --lora-r <= ${rankOf(narrowest)}`,
    );
  }
  const trainableParameters = adapted.reduce((n, m) => n + r * (m.inFeatures + m.outFeatures), 0);
  return { trainableParameters, totalParameters };
}
