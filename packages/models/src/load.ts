import type { BaseDtype } from '@lorafleet/core';
import type { CausalLM, ModelConfig } from './causal-lm.js';
import { buildModel, readModelConfig, readModelWeights } from './families.js';
import { type ModelTokenizer, tokenizerOrAbsent } from './absent-tokenizer.js';
import { loadTokenizer } from './tokenizer/index.js';

export interface LoadedModel {
  dir: string;
  config: ModelConfig;
  model: CausalLM;
  /** The folder's tokenizer; without tokenizer files, one that refuses text (pre-tokenized data needs none). */
  tokenizer: ModelTokenizer;
}

/**
 * A model folder: config (its family by model_type), weights (checked by
 * name and shape) and tokenizer. With `baseDtype` the linear layers' W are
 * packed from the host as each layer is built, so the device never holds
 * the whole model in f32 (what lets a model larger than wasm's 4 GiB heap
 * in f32 load as nf4); merge, PiSSA and modules_to_save need f32.
 */
export async function loadModel(
  dir: string,
  options: { baseDtype?: BaseDtype } = {},
): Promise<LoadedModel> {
  const config = await readModelConfig(dir);
  const tokenizer = await loadModelTokenizer(dir, config);
  const weights = await readModelWeights(dir, config);
  return { dir, config, model: buildModel(config, weights, options.baseDtype), tokenizer };
}

/** The folder's tokenizer (or the stand-in that refuses text), checked against the model's vocabulary. */
export async function loadModelTokenizer(
  dir: string,
  config: ModelConfig,
): Promise<ModelTokenizer> {
  const tokenizer = await tokenizerOrAbsent(dir, config, loadTokenizer);
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new Error(
      `${dir}: the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${config.vocabSize} (vocab_size)`,
    );
  }
  return tokenizer;
}
