// The Llama family (families.ts registers it for llama, mistral, qwen2,
// qwen3, gemma, gemma2, gemma3_text, granite, smollm3, phi3, olmo2, olmo3, glm and glm4; and, inside its multimodal wrapper, gemma3: gemma3/): config, weights under Hugging Face
// names, nn.Linear layers.
import type { ModelFamily } from '../causal-lm.js';
import { readWeightsFolder } from '../weights-folder.js';
import {
  type LlamaConfig,
  type LlamaModelType,
  llamaConfigFromJson,
  llamaConfigToJson,
  llamaModelConfig,
} from './config.js';
import { LlamaModel } from './model.js';
import {
  LM_HEAD,
  embedName,
  llamaLinearModules,
  llamaWeightShapes,
  randomLlamaWeights,
  textModel,
} from './weights.js';

/** Rotary buffers that older checkpoints store and the model recomputes. */
const IGNORED = /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;

export const llamaFamily: ModelFamily<LlamaConfig> = {
  name: 'Llama',
  // PEFT's defaults: q_proj and v_proj; Phi-3's fused layers, all four.
  defaultTargets: (config) =>
    config.arch.fusedQkv
      ? ['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj']
      : ['q_proj', 'v_proj'],
  readConfig: (json, modelType, source) =>
    llamaModelConfig(llamaConfigFromJson(json, modelType as LlamaModelType, source)),
  configToJson: (config, extra) => llamaConfigToJson(config.arch, extra),
  weightShapes: (config) => llamaWeightShapes(config.arch),
  linearModules: (config) => llamaLinearModules(config.arch),
  embeddingModules: (config) => [
    {
      name: `${textModel(config.arch)}.embed_tokens`,
      numEmbeddings: config.vocabSize,
      dim: config.hiddenSize,
      tiedToHead: config.arch.tieWordEmbeddings,
    },
  ],
  readWeights: (dir, config) => {
    const expected = llamaWeightShapes(config.arch);
    // A tied head may still be stored (save_pretrained leaves it out; other tools do not).
    const unused = new Map<string, number[]>();
    if (config.arch.tieWordEmbeddings) unused.set(LM_HEAD, expected.get(embedName(config.arch))!);
    // A bitsandbytes 4-bit folder: every linear W may be NF4 (bnb-4bit.ts).
    const nf4 = config.bnbNf4
      ? new Set(llamaLinearModules(config.arch).map((m) => `${m.name}.weight`))
      : undefined;
    return readWeightsFolder(dir, { expected, ignored: IGNORED, unused, nf4 });
  },
  randomWeights: (config, seed) => randomLlamaWeights(config.arch, seed),
  build: (config, weights, baseDtype) => new LlamaModel(config.arch, weights, baseDtype),
};
