// Tiny random Llama-family folders for the parity, generation and loading
// tests: one case per feature of the family, written with Hugging Face names.
import { type LoraSettings, TrainableParameters, tf } from '@lorafleet/core';
import type { CausalLM, ModelConfig, WeightMap } from '../src/index.js';
import { addLora, modelConfigFromJson, modelWeightShapes } from '../src/index.js';

/** mulberry32 + Box-Muller: test data that does not depend on the project's Rng. */
export function normals(seed: number): () => number {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

const TINY = {
  vocab_size: 61,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  max_position_embeddings: 32,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
};

export interface LlamaCase {
  label: string;
  json: Record<string, unknown>;
  seed: number;
  /** Three PEFT module names the adapter tests adapt, where the model lacks q_proj and v_proj (Phi-3). */
  targets?: string[];
}

/** Phi-3's PEFT module names: its fused layers and down_proj. */
const PHI3_TARGETS = ['qkv_proj', 'gate_up_proj', 'down_proj'];

export const LLAMA_CASES: LlamaCase[] = [
  {
    label: 'llama, GQA 4:2, untied head',
    json: { ...TINY, model_type: 'llama', num_key_value_heads: 2, tie_word_embeddings: false },
    seed: 21,
  },
  {
    label: 'llama, tied head, llama3 rope scaling',
    json: {
      ...TINY,
      model_type: 'llama',
      num_key_value_heads: 4,
      tie_word_embeddings: true,
      rope_theta: 500000,
      rope_scaling: {
        rope_type: 'llama3',
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 16,
      },
    },
    seed: 22,
  },
  {
    label: 'qwen2, q/k/v bias, one key/value head, linear rope scaling',
    json: {
      ...TINY,
      model_type: 'qwen2',
      num_key_value_heads: 1,
      tie_word_embeddings: false,
      rope_scaling: { type: 'linear', factor: 2 },
    },
    seed: 23,
  },
  {
    label: 'qwen3, q/k norms, head_dim 12, tied head',
    json: {
      ...TINY,
      model_type: 'qwen3',
      num_key_value_heads: 2,
      head_dim: 12,
      tie_word_embeddings: true,
    },
    seed: 24,
  },
  {
    label: 'mistral, sliding window 5',
    json: { ...TINY, model_type: 'mistral', num_key_value_heads: 2, sliding_window: 5 },
    seed: 25,
  },
  {
    // Tied by default, as GemmaConfig; H x head_dim (48) is not hidden_size (32), as Gemma 7B's.
    label: 'gemma, 1 + weight norms, scaled embeddings, GeGLU, head_dim 12',
    json: {
      ...TINY,
      model_type: 'gemma',
      num_key_value_heads: 2,
      head_dim: 12,
      hidden_activation: 'gelu_pytorch_tanh',
    },
    seed: 26,
  },
  {
    // Gemma 2: layer 0 slides (window 5), layer 1 attends to all; scores and logits
    // soft-capped (caps small enough to bite on these logits).
    label: 'gemma2, sandwich norms, soft-capped scores and logits, a sliding and a full layer',
    json: {
      ...TINY,
      model_type: 'gemma2',
      num_key_value_heads: 2,
      head_dim: 12,
      query_pre_attn_scalar: 20,
      sliding_window: 5,
      attn_logit_softcapping: 2,
      final_logit_softcapping: 5,
      hidden_activation: 'gelu_pytorch_tanh',
    },
    seed: 28,
  },
  {
    // Layer 0 slides (window 5, local base 10000), layer 1 attends to all (base 1e6, linear
    // scaling); scores scale by query_pre_attn_scalar 20, not head_dim 12.
    label: 'gemma3_text, sandwich norms, q/k norms, a sliding and a full layer, two rope bases',
    json: {
      ...TINY,
      model_type: 'gemma3_text',
      num_key_value_heads: 2,
      head_dim: 12,
      query_pre_attn_scalar: 20,
      sliding_window: 5,
      layer_types: ['sliding_attention', 'full_attention'],
      rope_theta: 1e6,
      rope_local_base_freq: 10000,
      rope_scaling: { rope_type: 'linear', factor: 2 },
      hidden_activation: 'gelu_pytorch_tanh',
    },
    seed: 27,
  },
  {
    // Every multiplier away from 1, far enough to change these logits (the feature test).
    label: 'granite, embedding, attention and residual multipliers, logits scaling',
    json: {
      ...TINY,
      model_type: 'granite',
      num_key_value_heads: 2,
      tie_word_embeddings: true,
      embedding_multiplier: 6,
      attention_multiplier: 0.6,
      residual_multiplier: 0.3,
      logits_scaling: 0.5,
    },
    seed: 29,
  },
  {
    // Layer 1 is NoPE; the head is tied (SmolLM3Config's default, left out here).
    label: 'smollm3, a layer without rotary embedding, tied head by default',
    json: { ...TINY, model_type: 'smollm3', num_key_value_heads: 2, no_rope_layers: [1, 0] },
    seed: 30,
  },
  {
    label: 'phi3, fused qkv_proj and gate_up_proj, GQA 4:2, sliding window 5',
    json: { ...TINY, model_type: 'phi3', num_key_value_heads: 2, sliding_window: 5 },
    seed: 31,
    targets: PHI3_TARGETS,
  },
  {
    // Phi-4-mini's shape of rotation: 6 of 8 dims rotate (3 frequencies), LongRoPE's short
    // factors below original_max_position_embeddings (32), cos and sin times
    // sqrt(1 + ln(128 / 32) / ln(32)); the head tied to the embedding.
    label: 'phi3, longrope, partial rotary 0.75, tied head',
    json: {
      ...TINY,
      model_type: 'phi3',
      num_key_value_heads: 4,
      tie_word_embeddings: true,
      max_position_embeddings: 128,
      original_max_position_embeddings: 32,
      partial_rotary_factor: 0.75,
      rope_scaling: { type: 'longrope', short_factor: [1, 1.5, 3], long_factor: [2, 4, 8] },
    },
    seed: 32,
    targets: PHI3_TARGETS,
  },
  {
    // Phi-3-mini-128k's LongRoPE, at a tiny scale: an original context of 8 below the
    // parity tests' 16 tokens, so whole passes (and each generated row once past 8 tokens)
    // take the long factors.
    label: 'phi3, longrope past its original context of 8 (long factors)',
    json: {
      ...TINY,
      model_type: 'phi3',
      num_key_value_heads: 2,
      max_position_embeddings: 64,
      original_max_position_embeddings: 8,
      rope_scaling: {
        type: 'longrope',
        short_factor: [1, 1.2, 2, 4],
        long_factor: [1.5, 3, 6, 12],
      },
    },
    seed: 37,
    targets: PHI3_TARGETS,
  },
  {
    // Frequency 0 kept, the others divided by 4 (the ramp of beta_fast 32 and beta_slow 1 over
    // an original context of 8); cos and sin times DeepSeek's mscale ratio, 1.0555 / 1.0277.
    label: 'qwen3, yarn rope scaling with mscale, q/k norms',
    json: {
      ...TINY,
      model_type: 'qwen3',
      num_key_value_heads: 2,
      rope_scaling: {
        rope_type: 'yarn',
        factor: 4,
        original_max_position_embeddings: 8,
        mscale: 0.4,
        mscale_all_dim: 0.2,
      },
    },
    seed: 34,
  },
  {
    // GlmConfig's defaults: q/k/v bias, half of each head (4 of 8 dims) turning in adjacent pairs.
    label: 'glm, adjacent-pair rotation of half of each head, fused gate_up_proj, q/k/v bias',
    json: { ...TINY, model_type: 'glm', num_key_value_heads: 2, head_dim: 8 },
    seed: 35,
  },
  {
    label: "glm4, norms of both branches' outputs under GLM-4's names, no bias",
    json: {
      ...TINY,
      model_type: 'glm4',
      num_key_value_heads: 2,
      head_dim: 8,
      partial_rotary_factor: 0.75,
      attention_bias: false,
    },
    seed: 36,
  },
  {
    label: 'olmo2, norms after attention and MLP only, q/k norms over all heads, GQA 4:2',
    json: { ...TINY, model_type: 'olmo2', num_key_value_heads: 2, rope_theta: 500000 },
    seed: 33,
  },
  {
    // OLMo 3: OLMo 2's layer; layer 0 slides (window 5) and rotates with rope_theta unscaled,
    // layer 1 attends to all with YaRN (as Olmo-3-7B's long-context files scale the full layers).
    label: 'olmo3, a sliding layer and a full one with YaRN, q/k norms over all heads',
    json: {
      ...TINY,
      model_type: 'olmo3',
      num_key_value_heads: 2,
      rope_theta: 500000,
      sliding_window: 5,
      layer_types: ['sliding_attention', 'full_attention'],
      rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 8 },
    },
    seed: 38,
  },
  {
    // EXAONE 4: OLMo 2's layer with per-head q/k norms; layer 0 slides (window 5), layer 1
    // attends to all without the rotary embedding; llama3 scaling as EXAONE-4.0-32B's.
    label: 'exaone4, a sliding layer and a full one without rotary embedding, q/k norms per head',
    json: {
      ...TINY,
      model_type: 'exaone4',
      num_key_value_heads: 2,
      sliding_window: 5,
      layer_types: ['sliding_attention', 'full_attention'],
      rope_scaling: {
        rope_type: 'llama3',
        factor: 4,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 8,
      },
    },
    seed: 39,
  },
];

export function caseConfig(c: LlamaCase): ModelConfig {
  return modelConfigFromJson(c.json, c.label);
}

/**
 * Random weights scaled so that logits are O(1) and attention is far from
 * uniform; norm gains and biases random, so mishandling them shows.
 */
export function randomWeights(config: ModelConfig, seed: number): WeightMap {
  const randn = normals(seed);
  const weights: WeightMap = new Map();
  for (const [name, shape] of modelWeightShapes(config)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const fill = name.endsWith('norm.weight')
      ? () => 1 + 0.3 * randn()
      : name.endsWith('.bias')
        ? () => 0.3 * randn()
        : name.includes('embed') || name.startsWith('lm_head')
          ? () => 0.5 * randn()
          : () => (0.6 / Math.sqrt(shape[1]!)) * randn() * 1.5;
    weights.set(name, { shape, data: Float32Array.from({ length: size }, fill) });
  }
  return weights;
}

export function randomIds(seed: number, vocab: number, B: number, T: number): number[][] {
  const randn = normals(seed);
  return Array.from({ length: B }, () =>
    Array.from({ length: T }, () => Math.floor(Math.abs(randn() * 1e6)) % vocab),
  );
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** LoRA on every linear layer, B given values (it starts at zero) so that every factor gets a gradient of its own. */
export async function loraEverywhere(
  model: CausalLM,
  settings: LoraSettings,
): Promise<TrainableParameters> {
  const layers = await addLora(
    model.linears(),
    'default',
    settings,
    { kind: 'kaiming' },
    'all-linear',
    5,
  );
  for (const l of layers) {
    const b = l.activeAdapter!.b;
    b.assign(tf.randomNormal(b.shape, 0, 0.1, 'float32', 9));
  }
  return TrainableParameters.fromLoraLayers(layers);
}
