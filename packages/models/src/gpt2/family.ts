// GPT-2 as a model family (families.ts): GPT2LMHeadModel's config, weights
// and Conv1D linear layers, behind the CausalLM contract.
import type { ModelFamily } from '../causal-lm.js';
import {
  type Gpt2Config,
  gpt2ConfigFromJson,
  gpt2ConfigToJson,
  gpt2ModelConfig,
} from './config.js';
import { readGpt2Weights } from './folder.js';
import { randomGpt2Weights } from './init.js';
import { Gpt2Model, gpt2WeightShapes, linearModules } from './model.js';

export const gpt2Family: ModelFamily<Gpt2Config> = {
  name: 'GPT-2',
  defaultTargets: () => ['c_attn'],
  readConfig: (json, _modelType, source) => gpt2ModelConfig(gpt2ConfigFromJson(json, source)),
  configToJson: (config, extra) => gpt2ConfigToJson(config.arch, extra),
  weightShapes: (config) => gpt2WeightShapes(config.arch),
  linearModules: (config) => linearModules(config.arch).map((m) => ({ ...m, fanInFanOut: true })),
  embeddingModules: (config) => [
    {
      name: 'transformer.wte',
      numEmbeddings: config.vocabSize,
      dim: config.hiddenSize,
      tiedToHead: true,
    },
  ],
  readWeights: (dir, config) => readGpt2Weights(dir, config.arch),
  randomWeights: (config, seed) => randomGpt2Weights(config.arch, seed),
  build: (config, weights, baseDtype) => new Gpt2Model(config.arch, weights, baseDtype),
};
