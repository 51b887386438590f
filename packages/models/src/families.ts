// The model families, keyed by config.json's model_type. Adding a family is
// one folder (config, model, weights, family) plus one line here; see
// docs/model-families.md.
import type { BaseDtype } from '@lorafleet/core';
import type {
  CausalLM,
  EmbeddingModule,
  LinearModule,
  ModelConfig,
  ModelFamily,
  ModelType,
  SaveOptions,
  WeightMap,
} from './causal-lm.js';
import { readBnb4bitConfig } from './bnb-4bit.js';
import { ModelConfigError } from './gpt2/config.js';
import { gpt2Family } from './gpt2/family.js';
import { readConfigJson } from './gpt2/folder.js';
import { gemma3Family } from './gemma3/family.js';
import { llamaFamily } from './llama/family.js';
import { withoutStorageFields, writeWeightsFolder } from './weights-folder.js';

export const FAMILIES: Record<ModelType, ModelFamily<unknown>> = {
  gpt2: gpt2Family,
  llama: llamaFamily,
  mistral: llamaFamily,
  qwen2: llamaFamily,
  qwen3: llamaFamily,
  gemma: llamaFamily,
  gemma2: llamaFamily,
  gemma3_text: llamaFamily,
  gemma3: gemma3Family,
  granite: llamaFamily,
  smollm3: llamaFamily,
  phi3: llamaFamily,
  olmo2: llamaFamily,
  olmo3: llamaFamily,
  exaone4: llamaFamily,
  glm: llamaFamily,
  glm4: llamaFamily,
};

/** Relatives of a supported family that it does not compute, and what sets them apart. */
const NEAR_MISSES: Readonly<Record<string, string>> = {
  granitemoe: "Granite MoE's experts are not computed; dense Granite (granite) is",
  granitemoehybrid:
    "Granite 4's Mamba layers and experts are not computed; dense Granite 3 (granite) is",
  olmo: "OLMo 1's non-parametric LayerNorm and q/k/v clipping are not computed; OLMo 2 (olmo2) is",
  chatglm:
    "ChatGLM's remote-code layout (query_key_value) is not read; GLM-4 in transformers' layout (glm, glm4) is",
  mixtral: "Mixtral's mixture of experts is not computed; Mistral (mistral) is",
  qwen2_moe: "Qwen2-MoE's experts are not computed; Qwen2 (qwen2) is",
  qwen3_moe: "Qwen3-MoE's experts are not computed; Qwen3 (qwen3) is",
  phi: 'Phi-1 and Phi-2 (parallel attention and MLP, LayerNorm) are not computed; Phi-3 and Phi-4 (phi3) are',
  phimoe: "Phi-3.5-MoE's experts are not computed; Phi-3 and Phi-4 (phi3) are",
};

const isModelType = (t: unknown): t is ModelType =>
  typeof t === 'string' && Object.hasOwn(FAMILIES, t);

export function familyOf(config: ModelConfig): ModelFamily<unknown> {
  return FAMILIES[config.modelType];
}

/**
 * config.json's object -> its family's config. A missing model_type means
 * GPT-2 (old GPT-2 files lack it); any other unknown type is refused by name.
 */
export function modelConfigFromJson(json: unknown, source: string): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelConfigError(`${source}: config must be a JSON object`);
  }
  const j = json as Record<string, unknown>;
  const type = j.model_type ?? 'gpt2';
  if (!isModelType(type)) {
    const near = typeof type === 'string' ? NEAR_MISSES[type] : undefined;
    throw new ModelConfigError(
      `${source}: model_type is ${JSON.stringify(j.model_type)}` +
        `${near ? ` (${near})` : ''}; supported: ${Object.keys(FAMILIES).join(', ')}`,
    );
  }
  const config = FAMILIES[type].readConfig(j, type, source);
  if (!readBnb4bitConfig(j, source)) return config;
  if (type === 'gpt2') {
    throw new ModelConfigError(
      `${source}: a bitsandbytes 4-bit GPT-2 folder is not supported (its Conv1D weights are ` +
        'stored transposed): use the unquantized model with --base-dtype nf4',
    );
  }
  return { ...config, bnbNf4: true };
}

export async function readModelConfig(dir: string): Promise<ModelConfig> {
  const { json, path } = await readConfigJson(dir);
  return modelConfigFromJson(json, path);
}

export const readModelWeights = (dir: string, config: ModelConfig): Promise<WeightMap> =>
  familyOf(config).readWeights(dir, config);

export const buildModel = (
  config: ModelConfig,
  weights: WeightMap,
  baseDtype: BaseDtype = 'f32',
): CausalLM => familyOf(config).build(config, weights, baseDtype);

export const randomModelWeights = (config: ModelConfig, seed: number): WeightMap =>
  familyOf(config).randomWeights(config, seed);

export const modelWeightShapes = (config: ModelConfig): Map<string, number[]> =>
  familyOf(config).weightShapes(config);

export const modelLinearModules = (config: ModelConfig): LinearModule[] =>
  familyOf(config).linearModules(config);

export const modelEmbeddingModules = (config: ModelConfig): EmbeddingModule[] =>
  familyOf(config).embeddingModules(config);

export const defaultLoraTargets = (config: ModelConfig): readonly string[] =>
  familyOf(config).defaultTargets(config);

/** Every stored tensor's size, summed (a tied head counted once). */
export function modelParameterCount(config: ModelConfig): number {
  let n = 0;
  for (const shape of modelWeightShapes(config).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}

/** Values of every linear layer's W (what --base-dtype packs). */
export function linearParameterCount(config: ModelConfig): number {
  return modelLinearModules(config).reduce((n, m) => n + m.inFeatures * m.outFeatures, 0);
}

/**
 * Writes a folder that this project and Hugging Face transformers both load:
 * config.json and model.safetensors with the family's Hugging Face names.
 */
export async function writeModelFolder(
  dir: string,
  config: ModelConfig,
  weights: WeightMap,
  options: SaveOptions = {},
): Promise<void> {
  const family = familyOf(config);
  if (family.writeFolder) return family.writeFolder(dir, config, weights, options);
  const kept = options.sourceDir ? sourceFields(await readConfigJson(options.sourceDir)) : {};
  const json = { ...kept, ...family.configToJson(config, options.configExtra) };
  await writeWeightsFolder(dir, json, family.weightShapes(config), weights, options.dtype);
}

function sourceFields({ json }: { json: unknown }): Record<string, unknown> {
  return withoutStorageFields(json as Record<string, unknown>);
}
