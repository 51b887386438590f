// A Llama-family model's variables from its weights: the embedding (with
// its LoRA slot), each decoder layer's LoraLinears and RMSNorms by role, the
// final norm and an untied head. Every nn.Linear is a LoraLinear ([out, in]
// weights) named by its PEFT module path; a 4-bit folder's NF4 bytes stay
// packed where the base is kept in NF4.
import { type BaseDtype, LoraEmbedding, LoraLinear, tf } from '@lorafleet/core';
import type { WeightMap } from '../causal-lm.js';
import type { LlamaConfig } from './config.js';
import {
  LM_HEAD,
  embedName,
  finalNormName,
  layerLinears,
  layerNormNames,
  layerPath,
  textModel,
} from './weights.js';

export interface LlamaLayer {
  /** The RMSNorms [C] by role (weights.ts layerNormNames); null where the layer has none. */
  inputNorm: tf.Variable<tf.Rank.R1> | null; // before attention; null: OLMo 2
  /** q_proj [C] -> [H D], k_proj and v_proj [C] -> [Hkv D]; or Phi-3's one qkv_proj [C] -> [(H + 2 Hkv) D]. */
  qkvProj: LoraLinear[];
  oProj: LoraLinear; // [H D] -> [C]
  qNorm: tf.Variable<tf.Rank.R1> | null; // [D], Qwen3, Gemma 3; [H D], OLMo 2
  kNorm: tf.Variable<tf.Rank.R1> | null; // [D]; [Hkv D], OLMo 2
  attnOutNorm: tf.Variable<tf.Rank.R1> | null; // of the attention output: Gemma 2, 3, OLMo 2, GLM-4
  preMlpNorm: tf.Variable<tf.Rank.R1> | null; // before the MLP; null: OLMo 2
  mlpOutNorm: tf.Variable<tf.Rank.R1> | null; // of the MLP output: Gemma 2, 3, OLMo 2, GLM-4
  /** gate_proj and up_proj [C] -> [F]; or Phi-3's one gate_up_proj [C] -> [2 F]. */
  gateUpProj: LoraLinear[];
  downProj: LoraLinear; // [F] -> [C]
}

/** What a LlamaModel computes with, made from `weights`. */
export interface LlamaVariables {
  embed: tf.Variable<tf.Rank.R2>; // [V, C]
  tokenEmbedding: LoraEmbedding;
  layers: LlamaLayer[];
  norm: tf.Variable<tf.Rank.R1>; // [C]
  lmHead: tf.Variable<tf.Rank.R2> | null; // [V, C]; null when tied
}

let nextModelId = 0;

/** `weights` must hold every tensor of llamaWeightShapes(config), checked by the loader. */
export function llamaVariables(
  config: LlamaConfig,
  weights: WeightMap,
  baseDtype: BaseDtype,
): LlamaVariables {
  const serial = nextModelId++;
  const get = (name: string) => {
    const w = weights.get(name);
    if (!w) throw new Error(`${config.modelType}: weight ${name} is missing`);
    return w;
  };
  const variable = (name: string) => {
    const w = get(name);
    // tidy: the variable keeps the data, the tensor it was made from goes.
    return tf.tidy(() => tf.variable(tf.tensor(w.data, w.shape), false, `${name}#llama${serial}`));
  };
  const linear = (name: string, bias: boolean) => {
    const w = get(`${name}.weight`);
    const shape = w.shape as [number, number];
    // A 4-bit folder's NF4 bytes stay as they are for nf4; other dtypes read them dequantized.
    const weight = w.nf4 && baseDtype === 'nf4' ? { nf4: w.nf4, shape } : { values: w.data, shape };
    const b = bias ? tf.tensor1d(get(`${name}.bias`).data) : null;
    const layer = new LoraLinear({ name, weight, bias: b, baseDtype });
    b?.dispose();
    return layer;
  };
  const embed = variable(embedName(config)) as tf.Variable<tf.Rank.R2>;
  const tokenEmbedding = new LoraEmbedding(
    `${textModel(config)}.embed_tokens`,
    embed,
    config.tieWordEmbeddings,
  );
  const layers: LlamaLayer[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    const p = layerPath(config, i);
    const l = Object.fromEntries(
      layerLinears(config).map((m) => [m.name, linear(`${p}.${m.name}`, m.bias)]),
    );
    const norm = (name: string) => variable(`${p}.${name}.weight`) as tf.Variable<tf.Rank.R1>;
    const names = layerNormNames(config);
    const roleNorm = (name: string | null) => (name === null ? null : norm(name));
    layers.push({
      inputNorm: roleNorm(names.input),
      qkvProj: config.fusedQkv
        ? [l['self_attn.qkv_proj']!]
        : [l['self_attn.q_proj']!, l['self_attn.k_proj']!, l['self_attn.v_proj']!],
      oProj: l['self_attn.o_proj']!,
      qNorm: config.qkNorm ? norm('self_attn.q_norm') : null,
      kNorm: config.qkNorm ? norm('self_attn.k_norm') : null,
      attnOutNorm: roleNorm(names.attnOut),
      preMlpNorm: roleNorm(names.preMlp),
      mlpOutNorm: roleNorm(names.mlpOut),
      gateUpProj: config.fusedGateUp
        ? [l['mlp.gate_up_proj']!]
        : [l['mlp.gate_proj']!, l['mlp.up_proj']!],
      downProj: l['mlp.down_proj']!,
    });
  }
  const norm = variable(finalNormName(config)) as tf.Variable<tf.Rank.R1>;
  const lmHead = config.tieWordEmbeddings ? null : (variable(LM_HEAD) as tf.Variable<tf.Rank.R2>);
  return { embed, tokenEmbedding, layers, norm, lmHead };
}
