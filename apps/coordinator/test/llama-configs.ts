// The tiny Llama-family configs that llama-family.test.ts takes through the
// CLI (lorafleet init makes each folder): one per model type's twist.

/** A Llama with grouped-query attention (4 query heads on 2 key/value heads) and an untied head. */
export const TINY_LLAMA = {
  model_type: 'llama',
  vocab_size: 300,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
  tie_word_embeddings: false,
};

/** Gemma: tied head, (1 + weight) norms, embeddings times sqrt(32), GeGLU, head_dim 16 of 4 heads on 32. */
const TINY_GEMMA = {
  ...TINY_LLAMA,
  model_type: 'gemma',
  head_dim: 16,
  tie_word_embeddings: true,
  hidden_activation: 'gelu_pytorch_tanh',
};

/** Gemma 2: norms after attention and MLP, layer 0 sliding (window 8), scores and logits soft-capped. */
const TINY_GEMMA2 = {
  ...TINY_GEMMA,
  model_type: 'gemma2',
  query_pre_attn_scalar: 16,
  sliding_window: 8,
  attn_logit_softcapping: 20,
  final_logit_softcapping: 10,
};

/** Gemma 3: norms after attention and MLP, q/k norms, layer 0 sliding (window 8, its own rotary base), layer 1 full. */
const TINY_GEMMA3 = {
  ...TINY_GEMMA,
  model_type: 'gemma3_text',
  query_pre_attn_scalar: 16,
  sliding_window: 8,
  layer_types: ['sliding_attention', 'full_attention'],
  rope_local_base_freq: 10000,
};

/** The multimodal Gemma 3: TINY_GEMMA3 as its text_config, beside a vision tower that is never trained. */
const { model_type: _, ...TINY_GEMMA3_TEXT } = TINY_GEMMA3;
const TINY_GEMMA3_MULTIMODAL = {
  model_type: 'gemma3',
  text_config: TINY_GEMMA3_TEXT,
  vision_config: {
    ...{ hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1, num_attention_heads: 2 },
    ...{ image_size: 28, patch_size: 14 },
  },
  ...{ mm_tokens_per_image: 4, boi_token_index: 297, eoi_token_index: 298, image_token_index: 299 },
};

/** Granite: embeddings, scores, branch outputs and logits scaled (merge must write all four back). */
const TINY_GRANITE = {
  ...TINY_LLAMA,
  model_type: 'granite',
  embedding_multiplier: 2,
  attention_multiplier: 0.3,
  residual_multiplier: 0.7,
  logits_scaling: 0.8,
};

/** SmolLM3: layer 1 without rotary embedding (NoPE), the head tied by default. */
const TINY_SMOLLM3 = {
  ...TINY_LLAMA,
  model_type: 'smollm3',
  tie_word_embeddings: undefined,
  no_rope_layers: [1, 0],
};

/**
 * Phi-3: fused qkv_proj and gate_up_proj, LongRoPE (original context 32 of 64)
 * rotating half of each head, a sliding window of 8. Trained without --target:
 * PEFT's defaults for phi3, all four linear layers.
 */
const TINY_PHI3 = {
  ...TINY_LLAMA,
  model_type: 'phi3',
  sliding_window: 8,
  partial_rotary_factor: 0.5,
  original_max_position_embeddings: 32,
  rope_scaling: { type: 'longrope', short_factor: [1, 2], long_factor: [4, 8] },
};

/** OLMo 2: no norms before attention and MLP, norms of their outputs, q/k norms over all heads. */
const TINY_OLMO2 = { ...TINY_LLAMA, model_type: 'olmo2', rope_theta: 500000 };

/** OLMo 3: OLMo 2's layer; layer 0 slides (window 8, unscaled), layer 1 attends to all with YaRN. */
const TINY_OLMO3 = {
  ...TINY_OLMO2,
  model_type: 'olmo3',
  sliding_window: 8,
  layer_types: ['sliding_attention', 'full_attention'],
  rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 16 },
};

/** EXAONE 4: OLMo 2's layer, per-head q/k norms; layer 0 slides (window 8), layer 1 attends to all without rotary embedding. */
const TINY_EXAONE4 = {
  ...TINY_LLAMA,
  model_type: 'exaone4',
  sliding_window: 8,
  layer_types: ['sliding_attention', 'full_attention'],
};

/** GLM-4 0414: q/k/v biases, fused gate_up_proj, adjacent-pair rotation of half of each head, four norms. */
const TINY_GLM4 = { ...TINY_LLAMA, model_type: 'glm4', head_dim: 8 };

/** The configs trained through the CLI, by the name the tests use. */
export const CONFIGS = {
  llama: TINY_LLAMA,
  gemma: TINY_GEMMA,
  gemma2: TINY_GEMMA2,
  gemma3: TINY_GEMMA3,
  gemma3_multimodal: TINY_GEMMA3_MULTIMODAL,
  granite: TINY_GRANITE,
  smollm3: TINY_SMOLLM3,
  phi3: TINY_PHI3,
  olmo2: TINY_OLMO2,
  olmo3: TINY_OLMO3,
  exaone4: TINY_EXAONE4,
  glm4: TINY_GLM4,
};
