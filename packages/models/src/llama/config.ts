// The config.json of LlamaForCausalLM and its relatives (Mistral, Qwen2,
// Qwen3, Gemma, Gemma 2, Gemma 3, Granite, SmolLM3, Phi-3, OLMo 2 and 3, GLM-4): one architecture, switched by the fields
// transformers reads. The rotary fields are rope-config.ts's.
import type { GatedActivation } from '@lorafleet/core';
import type { ModelConfig, ModelType } from '../causal-lm.js';
import {
  attentionDropout,
  attentionLayout,
  fieldReader,
  headShape,
  softcap,
  tokenId,
} from './config-fields.js';
import {
  ARCHITECTURES,
  DEFAULTS,
  isGemma,
  isGlm,
  isLaterGemma,
  isOlmo,
  postNormsOnly,
  slidingPattern,
} from './model-types.js';
import { ropeFromJson, ropeToJson } from './rope-config.js';

/** The decoder types this family computes: every model type but GPT-2's and Gemma 3's multimodal wrapper (gemma3/). */
export type LlamaModelType = Exclude<ModelType, 'gpt2' | 'gemma3'>;

/** rope_scaling types this project computes; any other is refused by name. */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  | {
      type: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositions: number;
    }
  | {
      /**
       * Phi-3's LongRoPE: the frequencies divided by shortFactor (one per
       * frequency), or by longFactor in a pass that reaches past
       * originalMaxPositions (rope.ts), cos and sin times attentionFactor.
       */
      type: 'longrope';
      shortFactor: number[];
      longFactor: number[];
      originalMaxPositions: number;
      attentionFactor: number;
      /** attention_factor was stated in the file (else derived from the context ratio). */
      attentionFactorStated: boolean;
    }
  | {
      /**
       * YaRN, as transformers v5 computes it: frequencies interpolated by
       * `factor` below a ramp between the dims that turn betaFast and
       * betaSlow times in originalMaxPositions, kept above it; cos and sin
       * times attentionFactor.
       */
      type: 'yarn';
      factor: number;
      originalMaxPositions: number;
      betaFast: number;
      betaSlow: number;
      /** The ramp's ends rounded outwards (transformers' default). */
      truncate: boolean;
      attentionFactor: number;
    };

export interface LlamaConfig {
  modelType: LlamaModelType;
  /**
   * The decoder's module path, which every tensor name but lm_head's starts
   * with: "model", or "model.language_model" where Gemma 3's multimodal
   * model wraps it (gemma3/).
   */
  modulePrefix: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  /** Grouped-query attention: every numHeads / numKvHeads query heads share a key/value head. */
  numKvHeads: number;
  /** Per-head width: config.json's head_dim when stated (Qwen3), else hidden_size / num_heads. */
  headDim: number;
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  /** Gemma 3, OLMo 3: the sliding-window layers rotate with this theta, unscaled; null: as every layer. */
  localRopeTheta: number | null;
  /** Phi-3 (Phi-4-mini): the leading fraction of each head that rotates (partial_rotary_factor); else 1. */
  partialRotaryFactor: number;
  /** Phi-3: q/k/v in one qkv_proj (output rows [q | k | v]). */
  fusedQkv: boolean;
  /** Phi-3, GLM: gate/up in one gate_up_proj (output rows [gate | up]). */
  fusedGateUp: boolean;
  /**
   * GLM: the rotary embedding turns adjacent pairs (x0, x1), (x2, x3), ...
   * (each frequency repeated: cos[2i] = cos[2i + 1]) instead of rotate-half's
   * (x_i, x_{i + R/2}).
   */
  rotaryInterleaved: boolean;
  /** SmolLM3: which layers apply the rotary embedding (no_rope_layers; the others are NoPE); null: all. */
  ropeLayers: boolean[] | null;
  /** Bias on q/k/v (Qwen2 always; attention_bias elsewhere) and on o_proj (attention_bias only). */
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  /**
   * RMSNorm of queries and keys before the rotation: over each head (Qwen3,
   * Gemma 3: weights [D]), or over all heads at once (OLMo 2: [H D] and
   * [Hkv D], before the heads split); null: none.
   */
  qkNorm: 'head' | 'all' | null;
  tieWordEmbeddings: boolean;
  /** Gemma: RMSNorm scales by (1 + weight), its stored weights being centred on 0. */
  normPlusOne: boolean;
  /**
   * The token embeddings times this enter the first layer: Gemma's
   * sqrt(hidden_size) rounded to float32, Granite's embedding_multiplier; else 1.
   */
  embedScale: number;
  /** Granite: attention scores scale by attention_multiplier (not head_dim^-1/2); null: not Granite. */
  attentionMultiplier: number | null;
  /** Granite: each branch's output times residual_multiplier before its residual add; else 1. */
  residualMultiplier: number;
  /** Granite: the logits divided by logits_scaling; else 1. */
  logitsScaling: number;
  /** The MLP's gate: silu (SwiGLU), or Gemma's gelu with the tanh approximation (GeGLU). */
  mlpActivation: GatedActivation;
  /** RMSNorm before attention (input_layernorm) and before the MLP; false: OLMo 2, whose branches read the residual stream itself. */
  preNorms: boolean;
  /**
   * Gemma 2 and 3, OLMo 2: attention and MLP outputs normed before their
   * residual adds (post_attention_layernorm, post_feedforward_layernorm;
   * Gemma's pre-MLP norm is then pre_feedforward_layernorm).
   */
  postNorms: boolean;
  /** Gemma 2 and 3: attention scores scale by query_pre_attn_scalar^-1/2; null: head_dim^-1/2. */
  queryPreAttnScalar: number | null;
  /** Gemma 2: attention scores soft-capped to cap tanh(s / cap) before the mask; null: not. */
  attnSoftcap: number | null;
  /** Gemma 2: the logits soft-capped the same way; null: not. */
  finalSoftcap: number | null;
  /** Mistral, Gemma 2 and 3, OLMo 3: each token sees only the last `slidingWindow` positions (null: all). */
  slidingWindow: number | null;
  /** Gemma 2 and 3, OLMo 3: which layers slide (layer_types); null: every layer, when slidingWindow is set. */
  slidingLayers: boolean[] | null;
  attentionDropout: number;
  bosTokenId: number | null;
  eosTokenId: number | number[] | null;
}

/** What multiplies q k^T: Granite's attention_multiplier, else query_pre_attn_scalar^-1/2 (Gemma 2, 3) or head_dim^-1/2. */
export function attentionScale(c: LlamaConfig): number {
  return c.attentionMultiplier ?? 1 / Math.sqrt(c.queryPreAttnScalar ?? c.headDim);
}

/** How many leading dims of each head rotate: int(head_dim * partial_rotary_factor), as transformers. */
export function rotaryDim(c: LlamaConfig): number {
  return Math.trunc(c.headDim * c.partialRotaryFactor);
}

/** Whether layer `i` applies the rotary embedding (SmolLM3's NoPE layers do not). */
export function layerRotates(c: LlamaConfig, i: number): boolean {
  return c.ropeLayers === null || c.ropeLayers[i]!;
}

/** The attention window of layer `i` (null: all positions). */
export function layerWindow(c: LlamaConfig, i: number): number | null {
  return c.slidingLayers === null || c.slidingLayers[i] ? c.slidingWindow : null;
}

export function llamaModelConfig(c: LlamaConfig): ModelConfig<LlamaConfig> {
  return {
    modelType: c.modelType,
    vocabSize: c.vocabSize,
    contextLength: c.maxPositions,
    ...(c.ropeScaling?.type === 'longrope'
      ? { rotarySwitch: c.ropeScaling.originalMaxPositions }
      : {}),
    hiddenSize: c.hiddenSize,
    numLayers: c.numLayers,
    numHeads: c.numHeads,
    arch: c,
  };
}

/** Reads a Llama-family config.json; every unsupported setting is refused by name. */
export function llamaConfigFromJson(
  j: Record<string, unknown>,
  modelType: LlamaModelType,
  source: string,
): LlamaConfig {
  const read = fieldReader(j, source);
  const { fail, int, positive, flag } = read;
  const defaults = DEFAULTS[modelType];
  refuseUnsupported(j, modelType, fail);
  const hiddenSize = int('hidden_size');
  const { numHeads, numKvHeads, headDim } = headShape(j, read, defaults, hiddenSize);
  const glm = isGlm(modelType);
  // MistralAttention and Exaone4Attention have no bias whatever the file says; GLM's q/k/v
  // have one unless it says not.
  const attentionBias =
    modelType !== 'mistral' && modelType !== 'exaone4' && flag('attention_bias', glm);
  const maxPositions = int('max_position_embeddings', defaults.maxPositions);
  const numLayers = int('num_hidden_layers');
  const gemma3 = modelType === 'gemma3_text';
  const granite = modelType === 'granite';
  const phi3 = modelType === 'phi3';
  const rope = ropeFromJson(j, modelType, { maxPositions, headDim }, defaults.ropeTheta, fail);
  return {
    modelType,
    modulePrefix: 'model',
    vocabSize: int('vocab_size'),
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    maxPositions,
    rmsNormEps: positive('rms_norm_eps', defaults.rmsNormEps),
    ...rope,
    fusedQkv: phi3,
    fusedGateUp: phi3 || glm,
    rotaryInterleaved: glm,
    normPlusOne: isGemma(modelType),
    // As GemmaModel: torch.tensor(hidden_size ** 0.5, dtype=float32).
    embedScale: isGemma(modelType)
      ? Math.fround(Math.sqrt(hiddenSize))
      : granite
        ? positive('embedding_multiplier', 1)
        : 1,
    // GraniteConfig's defaults: 1 each.
    attentionMultiplier: granite ? positive('attention_multiplier', 1) : null,
    residualMultiplier: granite ? positive('residual_multiplier', 1) : 1,
    logitsScaling: granite ? positive('logits_scaling', 1) : 1,
    mlpActivation: isGemma(modelType) ? 'gelu_tanh' : 'silu',
    preNorms: !postNormsOnly(modelType),
    postNorms: isLaterGemma(modelType) || postNormsOnly(modelType) || modelType === 'glm4',
    queryPreAttnScalar: isLaterGemma(modelType) ? positive('query_pre_attn_scalar', 256) : null,
    attnSoftcap: softcap(j, modelType, 'attn_logit_softcapping', fail),
    finalSoftcap: softcap(j, modelType, 'final_logit_softcapping', fail),
    ...attentionLayout(j, modelType, numLayers, defaults.slidingWindow, fail),
    qkvBias: modelType === 'qwen2' || attentionBias,
    oBias: modelType !== 'qwen2' && !glm && attentionBias, // GLM's o_proj: never
    mlpBias:
      (modelType === 'llama' || granite || modelType === 'smollm3') && flag('mlp_bias', false),
    qkNorm:
      modelType === 'qwen3' || gemma3 || modelType === 'exaone4'
        ? 'head'
        : isOlmo(modelType)
          ? 'all'
          : null,
    tieWordEmbeddings: flag('tie_word_embeddings', defaults.tieWordEmbeddings),
    attentionDropout: attentionDropout(j.attention_dropout, fail),
    bosTokenId: tokenId(j.bos_token_id),
    eosTokenId: Array.isArray(j.eos_token_id)
      ? (j.eos_token_id as number[])
      : tokenId(j.eos_token_id),
  };
}

/** Settings that change the computation in ways this family does not implement. */
function refuseUnsupported(
  j: Record<string, unknown>,
  modelType: LlamaModelType,
  fail: (what: string) => never,
): void {
  if (isGemma(modelType)) {
    // GemmaMLP reads hidden_activation (gelu_pytorch_tanh when null) and ignores hidden_act.
    const act = j.hidden_activation ?? 'gelu_pytorch_tanh';
    if (act !== 'gelu_pytorch_tanh' && act !== 'gelu_new')
      fail(`hidden_activation ${JSON.stringify(act)} is not supported (only "gelu_pytorch_tanh")`);
  } else {
    const act = j.hidden_act ?? 'silu';
    if (act !== 'silu') fail(`hidden_act ${JSON.stringify(act)} is not supported (only "silu")`);
  }
  if (j.use_bidirectional_attention === true)
    fail(
      'use_bidirectional_attention true is not supported (a causal LM attends to the past only)',
    );
  // Phi3DecoderLayer's dropout of each branch's output (Phi3Model applies no embd_pdrop).
  if (modelType === 'phi3' && (j.resid_pdrop ?? 0) !== 0)
    fail(`resid_pdrop ${JSON.stringify(j.resid_pdrop)} is not supported (only 0)`);
  if (j.pretraining_tp !== undefined && j.pretraining_tp !== 1)
    fail(`pretraining_tp ${JSON.stringify(j.pretraining_tp)} is not supported (only 1)`);
  if (modelType !== 'mistral' && j.use_sliding_window === true)
    fail(
      `use_sliding_window true is not supported for ${modelType} (only Mistral's sliding_window)`,
    );
}

/** config.json as transformers' save_pretrained writes it for this config (the fields that matter). */
export function llamaConfigToJson(
  c: LlamaConfig,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const json: Record<string, unknown> = {
    architectures: [ARCHITECTURES[c.modelType]],
    model_type: c.modelType,
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    max_position_embeddings: c.maxPositions,
    rms_norm_eps: c.rmsNormEps,
    ...ropeToJson(c),
    ...layoutToJson(c),
    // Gemma: both names, so that every transformers version reads the one activation.
    ...(c.mlpActivation === 'silu'
      ? { hidden_act: 'silu' }
      : { hidden_act: 'gelu_pytorch_tanh', hidden_activation: 'gelu_pytorch_tanh' }),
    attention_dropout: c.attentionDropout,
    tie_word_embeddings: c.tieWordEmbeddings,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    torch_dtype: 'float32',
    use_cache: true,
  };
  // GLM's attention_bias is its q/k/v bias (o_proj has none); elsewhere o_proj's goes with q/k/v's.
  if (c.modelType !== 'mistral' && c.modelType !== 'qwen2')
    json.attention_bias = isGlm(c.modelType) ? c.qkvBias : c.oBias;
  if (isGlm(c.modelType)) json.partial_rotary_factor = c.partialRotaryFactor;
  if (c.modelType === 'gemma2' || c.modelType === 'gemma3_text') {
    Object.assign(json, {
      query_pre_attn_scalar: c.queryPreAttnScalar,
      final_logit_softcapping: c.finalSoftcap,
      attn_logit_softcapping: c.attnSoftcap,
    });
  }
  if (c.modelType === 'llama' || c.modelType === 'granite' || c.modelType === 'smollm3')
    json.mlp_bias = c.mlpBias;
  if (c.modelType === 'granite') {
    Object.assign(json, {
      embedding_multiplier: c.embedScale,
      attention_multiplier: c.attentionMultiplier,
      residual_multiplier: c.residualMultiplier,
      logits_scaling: c.logitsScaling,
    });
  }
  if (c.modelType === 'phi3') {
    const s = c.ropeScaling;
    Object.assign(json, {
      partial_rotary_factor: c.partialRotaryFactor,
      resid_pdrop: 0,
      embd_pdrop: 0,
      ...(s?.type === 'longrope'
        ? { original_max_position_embeddings: s.originalMaxPositions }
        : {}),
    });
  }
  if (c.modelType === 'qwen2' || c.modelType === 'qwen3') json.use_sliding_window = false;
  return { ...json, ...extra };
}

/** attentionLayout's fields under the names the type's config class reads. */
function layoutToJson(c: LlamaConfig): Record<string, unknown> {
  if (c.modelType === 'mistral' || c.modelType === 'phi3')
    return { sliding_window: c.slidingWindow };
  if (c.modelType === 'smollm3')
    return { no_rope_layers: c.ropeLayers!.map((r) => (r ? 1 : 0)), use_sliding_window: false };
  if (slidingPattern(c.modelType) === null) return {};
  // Every layer listed: Exaone4Config, where none slides, would divide by a pattern of 0.
  const sliding = c.slidingLayers ?? Array<boolean>(c.numLayers).fill(false);
  return {
    sliding_window: c.slidingWindow,
    layer_types: sliding.map((s) => (s ? 'sliding_attention' : 'full_attention')),
  };
}
