// The config.json of LlamaForCausalLM and its relatives (Mistral, Qwen2,
// Qwen3, Gemma): one architecture, switched by the fields transformers reads.
import type { GatedActivation } from '@lorafleet/core';
import type { ModelConfig, ModelType } from '../causal-lm.js';
import { ModelConfigError } from '../gpt2/config.js';

export type LlamaModelType = Extract<ModelType, 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'gemma'>;

/** rope_scaling types this project computes; any other is refused by name. */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  | {
      type: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositions: number;
    };

export interface LlamaConfig {
  modelType: LlamaModelType;
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
  /** Bias on q/k/v (Qwen2 always; attention_bias elsewhere) and on o_proj (attention_bias only). */
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  /** Qwen3's per-head RMSNorm of queries and keys before the rotation. */
  qkNorm: boolean;
  tieWordEmbeddings: boolean;
  /** Gemma: RMSNorm scales by (1 + weight), its stored weights being centred on 0. */
  normPlusOne: boolean;
  /** Gemma: the token embeddings times sqrt(hidden_size), rounded to float32, enter the first layer; else 1. */
  embedScale: number;
  /** The MLP's gate: silu (SwiGLU), or Gemma's gelu with the tanh approximation (GeGLU). */
  mlpActivation: GatedActivation;
  /** Mistral: each token sees only the last `slidingWindow` positions (null: all). */
  slidingWindow: number | null;
  attentionDropout: number;
  bosTokenId: number | null;
  eosTokenId: number | number[] | null;
}

const ARCHITECTURES: Record<LlamaModelType, string> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
  gemma: 'GemmaForCausalLM',
};

/** Per type, what transformers' config class assumes for a field config.json leaves out. */
interface TypeDefaults {
  maxPositions: number;
  slidingWindow: number | null;
  rmsNormEps: number;
  tieWordEmbeddings: boolean;
  /** null: num_attention_heads; hidden_size / num_attention_heads. */
  numKvHeads: number | null;
  headDim: number | null;
}
const LLAMA_LIKE = { slidingWindow: null, rmsNormEps: 1e-6, numKvHeads: null, headDim: null };
const DEFAULTS: Record<LlamaModelType, TypeDefaults> = {
  llama: { ...LLAMA_LIKE, maxPositions: 2048, tieWordEmbeddings: false },
  mistral: {
    ...LLAMA_LIKE,
    maxPositions: 4096 * 32,
    slidingWindow: 4096,
    tieWordEmbeddings: false,
  },
  qwen2: { ...LLAMA_LIKE, maxPositions: 32768, tieWordEmbeddings: false },
  qwen3: { ...LLAMA_LIKE, maxPositions: 32768, tieWordEmbeddings: false },
  // GemmaConfig's defaults are Gemma 7B's.
  gemma: {
    ...LLAMA_LIKE,
    maxPositions: 8192,
    tieWordEmbeddings: true,
    numKvHeads: 16,
    headDim: 256,
  },
};

export function llamaModelConfig(c: LlamaConfig): ModelConfig<LlamaConfig> {
  return {
    modelType: c.modelType,
    vocabSize: c.vocabSize,
    contextLength: c.maxPositions,
    hiddenSize: c.hiddenSize,
    numLayers: c.numLayers,
    numHeads: c.numHeads,
    arch: c,
  };
}

/** Typed reads of config.json's fields, each refusing a bad value by name. */
function fieldReader(j: Record<string, unknown>, source: string) {
  const fail = (what: string): never => {
    throw new ModelConfigError(`${source}: ${what}`);
  };
  const int = (name: string, fallback?: number): number => {
    const v = j[name] ?? fallback;
    if (!Number.isSafeInteger(v) || (v as number) < 1)
      fail(`${name} is ${JSON.stringify(j[name])}, expected a positive integer`);
    return v as number;
  };
  const positive = (name: string, fallback: number): number => {
    const v = j[name] ?? fallback;
    if (typeof v !== 'number' || !(v > 0))
      fail(`${name} is ${JSON.stringify(j[name])}, expected a positive number`);
    return v as number;
  };
  const flag = (name: string, fallback: boolean): boolean => {
    const v = j[name] ?? fallback;
    if (typeof v !== 'boolean')
      fail(`${name} is ${JSON.stringify(j[name])}, expected true or false`);
    return v as boolean;
  };
  return { fail, int, positive, flag };
}

/** Query heads, key/value heads and the head width (head_dim, stated or the type's default, else hidden / heads). */
function headShape(
  j: Record<string, unknown>,
  { fail, int }: ReturnType<typeof fieldReader>,
  defaults: TypeDefaults,
  hiddenSize: number,
): { numHeads: number; numKvHeads: number; headDim: number } {
  const numHeads = int('num_attention_heads');
  const numKvHeads = int('num_key_value_heads', defaults.numKvHeads ?? numHeads);
  if (numHeads % numKvHeads !== 0)
    fail(
      `num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`,
    );
  const stated = j.head_dim === null ? undefined : (j.head_dim ?? defaults.headDim ?? undefined);
  if (stated === undefined && hiddenSize % numHeads !== 0)
    fail(
      `hidden_size (${hiddenSize}) must be divisible by num_attention_heads (${numHeads}) when head_dim is not given`,
    );
  const headDim =
    stated === undefined ? hiddenSize / numHeads : int('head_dim', defaults.headDim ?? undefined);
  if (headDim % 2 !== 0) fail(`head_dim ${headDim} must be even (rotary embeddings rotate pairs)`);
  return { numHeads, numKvHeads, headDim };
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
  // MistralAttention has no bias whatever the file says.
  const attentionBias = modelType !== 'mistral' && flag('attention_bias', false);
  const window =
    modelType === 'mistral'
      ? j.sliding_window === undefined
        ? defaults.slidingWindow
        : j.sliding_window
      : null;
  if (window !== null && (!Number.isSafeInteger(window) || (window as number) < 1))
    fail(`sliding_window is ${JSON.stringify(window)}, expected a positive integer or null`);
  const maxPositions = int('max_position_embeddings', defaults.maxPositions);
  return {
    modelType,
    vocabSize: int('vocab_size'),
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers: int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    maxPositions,
    rmsNormEps: positive('rms_norm_eps', defaults.rmsNormEps),
    ...ropeFromJson(j, maxPositions, fail),
    normPlusOne: modelType === 'gemma',
    // As GemmaModel: torch.tensor(hidden_size ** 0.5, dtype=float32).
    embedScale: modelType === 'gemma' ? Math.fround(Math.sqrt(hiddenSize)) : 1,
    mlpActivation: modelType === 'gemma' ? 'gelu_tanh' : 'silu',
    qkvBias: modelType === 'qwen2' || attentionBias,
    oBias: modelType !== 'qwen2' && attentionBias,
    mlpBias: modelType === 'llama' && flag('mlp_bias', false),
    qkNorm: modelType === 'qwen3',
    tieWordEmbeddings: flag('tie_word_embeddings', defaults.tieWordEmbeddings),
    slidingWindow: window as number | null,
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
  if (modelType === 'gemma') {
    // GemmaMLP reads hidden_activation (gelu_pytorch_tanh when null) and ignores hidden_act.
    const act = j.hidden_activation ?? 'gelu_pytorch_tanh';
    if (act !== 'gelu_pytorch_tanh' && act !== 'gelu_new')
      fail(`hidden_activation ${JSON.stringify(act)} is not supported (only "gelu_pytorch_tanh")`);
  } else {
    const act = j.hidden_act ?? 'silu';
    if (act !== 'silu') fail(`hidden_act ${JSON.stringify(act)} is not supported (only "silu")`);
  }
  if (j.pretraining_tp !== undefined && j.pretraining_tp !== 1)
    fail(`pretraining_tp ${JSON.stringify(j.pretraining_tp)} is not supported (only 1)`);
  if (modelType !== 'mistral' && j.use_sliding_window === true)
    fail(
      `use_sliding_window true is not supported for ${modelType} (only Mistral's sliding_window)`,
    );
}

function tokenId(v: unknown): number | null {
  return Number.isSafeInteger(v) ? (v as number) : null;
}

function attentionDropout(v: unknown, fail: (what: string) => never): number {
  const p = v ?? 0;
  if (typeof p !== 'number' || !(p >= 0 && p < 1))
    fail(`attention_dropout is ${JSON.stringify(v)}, expected a number in [0, 1)`);
  return p as number;
}

/**
 * The rotary settings. transformers v5 writes them as rope_parameters
 * (rope_type, rope_theta and the type's fields), older versions as rope_theta
 * and rope_scaling; as v5 reads a file, a rope_scaling replaces
 * rope_parameters, and rope_theta fills in one that lacks it.
 */
function ropeFromJson(
  j: Record<string, unknown>,
  maxPositions: number,
  fail: (what: string) => never,
): { ropeTheta: number; ropeScaling: RopeScaling | null } {
  const key = j.rope_scaling != null ? 'rope_scaling' : 'rope_parameters';
  const raw = j[key] ?? null;
  if (raw !== null && (typeof raw !== 'object' || Array.isArray(raw)))
    fail(`${key} must be an object or null`);
  const r = (raw ?? {}) as Record<string, unknown>;
  const values = Object.values(r);
  if (values.length > 0 && values.every((v) => typeof v === 'object' && v !== null))
    fail(`${key} per layer type (${Object.keys(r).join(', ')}) is not supported`);
  const theta = r.rope_theta ?? j.rope_theta ?? 10000;
  if (typeof theta !== 'number' || !(theta > 0))
    fail(`rope_theta is ${JSON.stringify(theta)}, expected a positive number`);
  const ropeScaling = raw === null ? null : ropeScalingFromJson(r, key, maxPositions, fail);
  if (ropeScaling !== null && j.model_type === 'gemma')
    fail(
      `${key} type ${JSON.stringify(ropeScaling.type)} is not supported for gemma (only "default")`,
    );
  return { ropeTheta: theta as number, ropeScaling };
}

/** The scaling of rope_scaling or rope_parameters (`key`): "default" (none), "linear" or "llama3" (the type is rope_type, or type in older files). */
function ropeScalingFromJson(
  r: Record<string, unknown>,
  key: string,
  maxPositions: number,
  fail: (what: string) => never,
): RopeScaling | null {
  // v5 always names the type; a rope_parameters that does not means none.
  const type = r.rope_type ?? r.type ?? (key === 'rope_parameters' ? 'default' : undefined);
  const num = (name: string, fallback?: number): number => {
    const v = r[name] ?? fallback;
    if (typeof v !== 'number' || !(v > 0))
      fail(`${key}.${name} is ${JSON.stringify(r[name])}, expected a positive number`);
    return v as number;
  };
  if (type === 'default') return null;
  if (type === 'linear') return { type: 'linear', factor: num('factor') };
  if (type === 'llama3') {
    const scaling: RopeScaling = {
      type: 'llama3',
      factor: num('factor'),
      lowFreqFactor: num('low_freq_factor'),
      highFreqFactor: num('high_freq_factor'),
      originalMaxPositions: num('original_max_position_embeddings', maxPositions),
    };
    if (scaling.highFreqFactor <= scaling.lowFreqFactor)
      fail(`${key}.high_freq_factor must be larger than low_freq_factor`);
    return scaling;
  }
  return fail(
    `${key} type ${JSON.stringify(type)} is not supported (supported: "default", "linear", "llama3")`,
  );
}

/** config.json as transformers' save_pretrained writes it for this config (the fields that matter). */
export function llamaConfigToJson(
  c: LlamaConfig,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const scaling =
    c.ropeScaling === null
      ? null
      : c.ropeScaling.type === 'linear'
        ? { rope_type: 'linear', factor: c.ropeScaling.factor }
        : {
            rope_type: 'llama3',
            factor: c.ropeScaling.factor,
            low_freq_factor: c.ropeScaling.lowFreqFactor,
            high_freq_factor: c.ropeScaling.highFreqFactor,
            original_max_position_embeddings: c.ropeScaling.originalMaxPositions,
          };
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
    // Both layouts, so that transformers before and since v5 read the same rotation.
    rope_theta: c.ropeTheta,
    rope_scaling: scaling,
    rope_parameters: { ...(scaling ?? { rope_type: 'default' }), rope_theta: c.ropeTheta },
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
  if (c.modelType === 'llama' || c.modelType === 'qwen3' || c.modelType === 'gemma')
    json.attention_bias = c.oBias;
  if (c.modelType === 'llama') json.mlp_bias = c.mlpBias;
  if (c.modelType === 'mistral') json.sliding_window = c.slidingWindow;
  if (c.modelType === 'qwen2' || c.modelType === 'qwen3') json.use_sliding_window = false;
  return { ...json, ...extra };
}
