// A tiny model folder, a dataset and the RunConfig for them, in a temporary
// folder; and a TrainingStep over a random model with LoRA on every linear layer.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TrainableParameters } from '@lorafleet/core';
import {
  type CausalLM,
  addLora,
  buildModel,
  gpt2ConfigFromJson,
  loadTokenizer,
  modelConfigFromJson,
  randomModelWeights,
  randomGpt2Weights,
  saveByteTokenizerConfig,
  writeGpt2Folder,
} from '@lorafleet/models';
import {
  type RunConfig,
  type StepConfig,
  TrainingStep,
  prepareRows,
  rowsFingerprint,
} from '../src/index.js';

/** AdamW at lr 1e-2, a constant schedule, clipping at 1, seed 3: what the step tests train with. */
export const STEP_CONFIG: StepConfig = {
  optimizer: { kind: 'adamw', lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 },
  schedule: { kind: 'constant' },
  maxGradNorm: 1,
  seed: 3,
};

/**
 * A model of `json` (config.json's fields) with random weights of `weightSeed`,
 * LoRA r=4 alpha=8 (gaussian B) on every linear layer with `dropout`, and a
 * TrainingStep over it. Dispose of the step and the model when done.
 */
export async function loraStep(
  json: object,
  {
    weightSeed = 1,
    dropout = 0,
    step = {},
  }: { weightSeed?: number; dropout?: number; step?: Partial<StepConfig> } = {},
): Promise<{ model: CausalLM; params: TrainableParameters; step: TrainingStep }> {
  const config = modelConfigFromJson(json, 'a test model');
  const model = buildModel(config, randomModelWeights(config, weightSeed));
  const lora = { r: 4, alpha: 8, dropout, rslora: false };
  const layers = await addLora(
    model.linears(),
    'default',
    lora,
    { kind: 'gaussian' },
    'all-linear',
    2,
  );
  const params = TrainableParameters.fromLoraLayers(layers);
  return { model, params, step: new TrainingStep(model, params, { ...STEP_CONFIG, ...step }) };
}

export async function tinyRun(): Promise<{ dir: string; config: RunConfig }> {
  const dir = await mkdtemp(join(tmpdir(), 'lorafleet-worker-test-'));
  const modelDir = join(dir, 'model');
  const config = gpt2ConfigFromJson(
    {
      model_type: 'gpt2',
      vocab_size: 257,
      n_positions: 32,
      n_embd: 16,
      n_layer: 1,
      n_head: 2,
    },
    'tiny test model',
  );
  await writeGpt2Folder(modelDir, config, randomGpt2Weights(config, 0), {
    configExtra: { bos_token_id: 256, eos_token_id: 256 },
  });
  await saveByteTokenizerConfig(modelDir, { modelMaxLength: 32 });
  const dataFile = join(dir, 'train.jsonl');
  const lines = Array.from({ length: 12 }, (_, i) => JSON.stringify({ text: `row ${i}: abcabc` }));
  await writeFile(dataFile, lines.join('\n') + '\n');
  const rows = { seqLen: 16, packing: 'auto' as const };
  const prepared = await prepareRows(dataFile, await loadTokenizer(modelDir), rows);
  return {
    dir,
    config: {
      modelDir,
      dataFile,
      rows,
      mode: 'lora',
      evalFraction: 0,
      rowsFingerprint: rowsFingerprint(prepared.rows),
      evalData: null,
      lora: { r: 2, alpha: 4, dropout: 0, rslora: false, init: 'kaiming', targets: ['c_attn'] },
      optimizer: { kind: 'adamw', lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 },
      schedule: { kind: 'constant' },
      maxGradNorm: 1,
      seed: 3,
      ringTimeoutMs: 10_000,
      wireDtype: 'fp32',
      resumeFrom: null,
      baseDtype: 'f32',
    },
  };
}
