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
import { type LoraInitKind, type RunConfig, prepareRows, rowsFingerprint } from '@lorafleet/worker';
import { type Options, UsageError } from '../args.js';
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

export async function planRun(o: Options): Promise<RunPlan> {
  const unsupported = [
    o.boolean('full-finetune') && '--full-finetune',
    o.number('eval-fraction') > 0 && '--eval-fraction',
  ].filter(Boolean);
  if (unsupported.length > 0) {
    throw new UsageError(
      `train: ${unsupported.join(', ')} not supported with several workers yet (LoRA training only; ` +
        'held-out data goes in --eval-data)',
    );
  }
  if (o.number('eval-every') > 0 && !o.has('eval-data')) {
    throw new UsageError('train: --eval-every needs --eval-data with several workers');
  }
  const modelDir = o.string('model');
  const modelConfig = await readModelConfig(modelDir);
  const tokenizer = await loadModelTokenizer(modelDir, modelConfig);
  const rows = rowOptionsFrom(o, modelConfig.contextLength);
  const dataFile = o.string('data');
  const prepared = await prepareRows(dataFile, tokenizer, rows);
  const evalFile = o.optionalString('eval-data');
  const evalRows = evalFile
    ? await prepareRows(evalFile, tokenizer, rows, '--eval-data')
    : undefined;

  const r = o.number('lora-r');
  const targets = o.list('target');
  const adapted = selectTargets(modelLinearModules(modelConfig), targets);
  const trainableParameters = adapted.reduce((n, m) => n + r * (m.inFeatures + m.outFeatures), 0);
  const totalParameters = modelParameterCount(modelConfig);

  const seed = o.number('seed');
  const { batchSize, microBatchSize, sampler, steps, schedule, optimizer, maxGradNorm } =
    stepOptionsFrom(o, prepared.rows.length);
  const config: RunConfig = {
    modelDir,
    dataFile,
    rows,
    rowsFingerprint: rowsFingerprint(prepared.rows),
    evalData:
      evalFile && evalRows
        ? { file: evalFile, rowsFingerprint: rowsFingerprint(evalRows.rows) }
        : null,
    lora: {
      r,
      alpha: o.number('lora-alpha'),
      dropout: o.number('lora-dropout'),
      rslora: o.boolean('rslora'),
      init: o.string('init') as LoraInitKind,
      targets,
    },
    optimizer,
    schedule,
    maxGradNorm,
    seed,
    ringTimeoutMs: RING_TIMEOUT_MS,
    resumeFrom: null,
  };
  return {
    config,
    modelConfig,
    backend: o.string('backend') as BackendName,
    sampler,
    steps,
    batchSize,
    microBatchSize,
    trainableParameters,
    totalParameters,
    dataDescription: prepared.description,
    warnings: [...prepared.warnings, ...(evalRows?.warnings ?? [])],
    evalRows: evalRows?.rows.length ?? 0,
    evalDescription: evalRows?.description ?? null,
    evalEvery: o.number('eval-every'),
  };
}
