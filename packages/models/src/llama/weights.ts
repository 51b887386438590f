// The tensors of a Llama-family model under Hugging Face's names
// (model.layers.N.self_attn.q_proj.weight, ...): shapes, the linear layers by
// PEFT module path, and random weights as transformers initialises them.
import { type LoraLinear, Rng, type tf } from '@lorafleet/core';
import type { LinearModule, WeightMap } from '../causal-lm.js';
import type { LlamaConfig } from './config.js';
import type { LlamaLayer } from './model.js';

/**
 * The decoder's module path: "model", or "model.language_model" inside
 * Gemma 3's multimodal wrapper (gemma3/). Every tensor but lm_head sits under it.
 */
export const textModel = (c: LlamaConfig) => c.modulePrefix;
export const embedName = (c: LlamaConfig) => `${c.modulePrefix}.embed_tokens.weight`;
export const finalNormName = (c: LlamaConfig) => `${c.modulePrefix}.norm.weight`;
/** A decoder layer's module path: model.layers.i. */
export const layerPath = (c: LlamaConfig, i: number) => `${c.modulePrefix}.layers.${i}`;
export const LM_HEAD = 'lm_head.weight';

/**
 * The linear layers of one decoder layer: PEFT name -> [out, in] and whether
 * it has a bias. Phi-3 fuses q/k/v into qkv_proj, Phi-3 and GLM gate/up into
 * gate_up_proj (without biases).
 */
export function layerLinears(
  c: LlamaConfig,
): { name: string; out: number; in: number; bias: boolean }[] {
  const [C, F] = [c.hiddenSize, c.intermediateSize];
  const [q, kv] = [c.numHeads * c.headDim, c.numKvHeads * c.headDim];
  const attention = c.fusedQkv
    ? [{ name: 'self_attn.qkv_proj', out: q + 2 * kv, in: C, bias: false }]
    : [
        { name: 'self_attn.q_proj', out: q, in: C, bias: c.qkvBias },
        { name: 'self_attn.k_proj', out: kv, in: C, bias: c.qkvBias },
        { name: 'self_attn.v_proj', out: kv, in: C, bias: c.qkvBias },
      ];
  const gateUp = c.fusedGateUp
    ? [{ name: 'mlp.gate_up_proj', out: 2 * F, in: C, bias: false }]
    : [
        { name: 'mlp.gate_proj', out: F, in: C, bias: c.mlpBias },
        { name: 'mlp.up_proj', out: F, in: C, bias: c.mlpBias },
      ];
  return [
    ...attention,
    { name: 'self_attn.o_proj', out: C, in: q, bias: c.oBias },
    ...gateUp,
    { name: 'mlp.down_proj', out: C, in: F, bias: c.mlpBias },
  ];
}

/** A decoder layer's RMSNorms by role, under their Hugging Face names; null: the layer has none. */
export interface LayerNormNames {
  /** Before attention. */
  input: string | null;
  /** Of the attention output, before its residual add. */
  attnOut: string | null;
  /** Before the MLP. */
  preMlp: string | null;
  /** Of the MLP output, before its residual add. */
  mlpOut: string | null;
}

/**
 * Llama: input_layernorm and post_attention_layernorm (before the MLP, for
 * all its name). Gemma 2 and 3 add norms of both outputs, so the MLP's is
 * pre_feedforward_layernorm; OLMo 2 has the output norms only; GLM-4 names
 * its four norms its own way.
 */
export function layerNormNames(c: LlamaConfig): LayerNormNames {
  if (c.modelType === 'glm4')
    return {
      input: 'input_layernorm',
      attnOut: 'post_self_attn_layernorm',
      preMlp: 'post_attention_layernorm',
      mlpOut: 'post_mlp_layernorm',
    };
  return {
    input: c.preNorms ? 'input_layernorm' : null,
    attnOut: c.postNorms ? 'post_attention_layernorm' : null,
    preMlp: !c.preNorms
      ? null
      : c.postNorms
        ? 'pre_feedforward_layernorm'
        : 'post_attention_layernorm',
    mlpOut: c.postNorms ? 'post_feedforward_layernorm' : null,
  };
}

/** One built layer's linear layers, in layerLinears' order. */
export function layerLinearLayers(l: LlamaLayer): LoraLinear[] {
  return [...l.qkvProj, l.oProj, ...l.gateUpProj, l.downProj];
}

/** Every stored tensor's name and shape, in model order (lm_head only when untied). */
export function llamaWeightShapes(c: LlamaConfig): Map<string, number[]> {
  const C = c.hiddenSize;
  const shapes = new Map<string, number[]>([[embedName(c), [c.vocabSize, C]]]);
  for (let i = 0; i < c.numLayers; i++) {
    const p = layerPath(c, i);
    const norms = layerNormNames(c);
    if (norms.input) shapes.set(`${p}.${norms.input}.weight`, [C]);
    // q/k norms over a head (D), or OLMo 2's over all heads (H D, Hkv D).
    const [qNorm, kNorm] =
      c.qkNorm === 'all'
        ? [c.numHeads * c.headDim, c.numKvHeads * c.headDim]
        : [c.headDim, c.headDim];
    for (const l of layerLinears(c)) {
      shapes.set(`${p}.${l.name}.weight`, [l.out, l.in]);
      if (l.bias) shapes.set(`${p}.${l.name}.bias`, [l.out]);
      if (c.qkNorm && l.name === 'self_attn.k_proj') {
        shapes.set(`${p}.self_attn.q_norm.weight`, [qNorm]);
        shapes.set(`${p}.self_attn.k_norm.weight`, [kNorm]);
      }
    }
    for (const name of [norms.attnOut, norms.preMlp, norms.mlpOut])
      if (name) shapes.set(`${p}.${name}.weight`, [C]);
  }
  shapes.set(finalNormName(c), [C]);
  if (!c.tieWordEmbeddings) shapes.set(LM_HEAD, [c.vocabSize, C]);
  return shapes;
}

export function llamaLinearModules(c: LlamaConfig): LinearModule[] {
  const out: LinearModule[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    for (const l of layerLinears(c)) {
      out.push({
        name: `${layerPath(c, i)}.${l.name}`,
        inFeatures: l.in,
        outFeatures: l.out,
        fanInFanOut: false,
      });
    }
  }
  return out;
}

/**
 * transformers' _init_weights: N(0, initializer_range) for linear and
 * embedding weights, zero biases, unit norms (Gemma's: zero, which scale by
 * 1 + weight).
 */
export function randomLlamaWeights(c: LlamaConfig, seed: number, std = 0.02): WeightMap {
  const rng = new Rng(seed);
  const weights: WeightMap = new Map();
  for (const [name, shape] of llamaWeightShapes(c)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(size);
    if (shape.length === 1 && name.endsWith('norm.weight')) data.fill(c.normPlusOne ? 0 : 1);
    else if (shape.length === 2) for (let i = 0; i < size; i++) data[i] = rng.normal() * std;
    weights.set(name, { shape, data });
  }
  return weights;
}

/** Every variable a layer reads (core's checkpoint differentiates the trainable ones). */
export function layerVariables(l: LlamaLayer): tf.Variable[] {
  const norms = [l.inputNorm, l.qNorm, l.kNorm, l.attnOutNorm, l.preMlpNorm, l.mlpOutNorm];
  const linears = layerLinearLayers(l).flatMap((p) => p.variables());
  return [...norms.filter((n): n is tf.Variable<tf.Rank.R1> => n !== null), ...linears];
}
