// The tensors of a Llama-family model under Hugging Face's names
// (model.layers.N.self_attn.q_proj.weight, ...): shapes, the linear layers by
// PEFT module path, and random weights as transformers initialises them.
import { type LoraLinear, Rng, type tf } from '@lorafleet/core';
import type { LinearModule, WeightMap } from '../causal-lm.js';
import type { LlamaConfig } from './config.js';
import type { LlamaLayer } from './model.js';

export const EMBED = 'model.embed_tokens.weight';
export const FINAL_NORM = 'model.norm.weight';
export const LM_HEAD = 'lm_head.weight';

/**
 * The linear layers of one decoder layer: PEFT name -> [out, in] and whether
 * it has a bias. Phi-3 fuses q/k/v into qkv_proj and gate/up into gate_up_proj.
 */
export function layerLinears(
  c: LlamaConfig,
): { name: string; out: number; in: number; bias: boolean }[] {
  const [C, F] = [c.hiddenSize, c.intermediateSize];
  const [q, kv] = [c.numHeads * c.headDim, c.numKvHeads * c.headDim];
  if (c.fusedProjections)
    return [
      { name: 'self_attn.qkv_proj', out: q + 2 * kv, in: C, bias: false },
      { name: 'self_attn.o_proj', out: C, in: q, bias: false },
      { name: 'mlp.gate_up_proj', out: 2 * F, in: C, bias: false },
      { name: 'mlp.down_proj', out: C, in: F, bias: false },
    ];
  return [
    { name: 'self_attn.q_proj', out: q, in: C, bias: c.qkvBias },
    { name: 'self_attn.k_proj', out: kv, in: C, bias: c.qkvBias },
    { name: 'self_attn.v_proj', out: kv, in: C, bias: c.qkvBias },
    { name: 'self_attn.o_proj', out: C, in: q, bias: c.oBias },
    { name: 'mlp.gate_proj', out: F, in: C, bias: c.mlpBias },
    { name: 'mlp.up_proj', out: F, in: C, bias: c.mlpBias },
    { name: 'mlp.down_proj', out: C, in: F, bias: c.mlpBias },
  ];
}

/**
 * The norm before a layer's MLP: post_attention_layernorm, Gemma 2's and 3's
 * pre_feedforward_layernorm, or none (OLMo 2, whose post_attention_layernorm
 * norms the attention output).
 */
export function preMlpNorm(c: LlamaConfig, l: LlamaLayer): tf.Variable<tf.Rank.R1> | null {
  return !c.preNorms ? null : c.postNorms ? l.preFfNorm : l.postNorm;
}

/** One built layer's linear layers, in layerLinears' order. */
export function layerLinearLayers(l: LlamaLayer): LoraLinear[] {
  return [...l.qkvProj, l.oProj, ...l.gateUpProj, l.downProj];
}

/** Every stored tensor's name and shape, in model order (lm_head only when untied). */
export function llamaWeightShapes(c: LlamaConfig): Map<string, number[]> {
  const C = c.hiddenSize;
  const shapes = new Map<string, number[]>([[EMBED, [c.vocabSize, C]]]);
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    if (c.preNorms) shapes.set(`${p}.input_layernorm.weight`, [C]);
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
    shapes.set(`${p}.post_attention_layernorm.weight`, [C]);
    if (c.preNorms && c.postNorms) shapes.set(`${p}.pre_feedforward_layernorm.weight`, [C]);
    if (c.postNorms) shapes.set(`${p}.post_feedforward_layernorm.weight`, [C]);
  }
  shapes.set(FINAL_NORM, [C]);
  if (!c.tieWordEmbeddings) shapes.set(LM_HEAD, [c.vocabSize, C]);
  return shapes;
}

export function llamaLinearModules(c: LlamaConfig): LinearModule[] {
  const out: LinearModule[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    for (const l of layerLinears(c)) {
      out.push({
        name: `model.layers.${i}.${l.name}`,
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
