// GPT-2's config.json, as Hugging Face transformers writes and reads it.
import type { ModelConfig } from '../causal-lm.js';

export interface Gpt2Config {
  vocabSize: number;
  /** Context length (learned position embeddings). */
  nPositions: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  /** MLP width; null means 4 * nEmbd, as in Hugging Face. */
  nInner: number | null;
  layerNormEpsilon: number;
  /** Dropout on embeddings, attention probabilities and residual branches (training only). */
  embdPdrop: number;
  attnPdrop: number;
  residPdrop: number;
}

export const GPT2_SMALL: Gpt2Config = {
  vocabSize: 50257,
  nPositions: 1024,
  nEmbd: 768,
  nLayer: 12,
  nHead: 12,
  nInner: null,
  layerNormEpsilon: 1e-5,
  embdPdrop: 0.1,
  attnPdrop: 0.1,
  residPdrop: 0.1,
};

export function mlpWidth(c: Gpt2Config): number {
  return c.nInner ?? 4 * c.nEmbd;
}

export class ModelConfigError extends Error {
  override name = 'ModelConfigError';
}

/** Reads config.json's fields (GPT-2 names); unknown fields are ignored, missing ones are errors. */
export function gpt2ConfigFromJson(json: unknown, source: string): Gpt2Config {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelConfigError(`${source}: config must be a JSON object`);
  }
  const j = json as Record<string, unknown>;
  const modelType = j.model_type;
  if (modelType !== undefined && modelType !== 'gpt2') {
    throw new ModelConfigError(
      `${source}: model_type is ${JSON.stringify(modelType)}; only "gpt2" models are supported so far`,
    );
  }
  const activation = j.activation_function ?? 'gelu_new';
  if (activation !== 'gelu_new') {
    throw new ModelConfigError(
      `${source}: activation_function ${JSON.stringify(activation)} is not supported (only "gelu_new")`,
    );
  }
  const int = (name: string, fallback?: number): number => {
    const v = j[name] ?? fallback;
    if (!Number.isSafeInteger(v) || (v as number) < 1) {
      throw new ModelConfigError(
        `${source}: ${name} is ${JSON.stringify(j[name])}, expected a positive integer`,
      );
    }
    return v as number;
  };
  const prob = (name: string, fallback: number): number => {
    const v = j[name] ?? fallback;
    if (typeof v !== 'number' || !(v >= 0 && v < 1)) {
      throw new ModelConfigError(
        `${source}: ${name} is ${JSON.stringify(j[name])}, expected a number in [0, 1)`,
      );
    }
    return v;
  };
  const epsilon = (): number => {
    const v = j.layer_norm_epsilon ?? 1e-5;
    if (typeof v !== 'number' || !(v > 0 && v < 1)) {
      throw new ModelConfigError(
        `${source}: layer_norm_epsilon is ${JSON.stringify(j.layer_norm_epsilon)}, expected a small positive number`,
      );
    }
    return v;
  };
  const config: Gpt2Config = {
    vocabSize: int('vocab_size'),
    nPositions: int('n_positions', typeof j.n_ctx === 'number' ? j.n_ctx : undefined),
    nEmbd: int('n_embd'),
    nLayer: int('n_layer'),
    nHead: int('n_head'),
    nInner: j.n_inner === null || j.n_inner === undefined ? null : int('n_inner'),
    layerNormEpsilon: epsilon(),
    embdPdrop: prob('embd_pdrop', 0.1),
    attnPdrop: prob('attn_pdrop', 0.1),
    residPdrop: prob('resid_pdrop', 0.1),
  };
  if (config.nEmbd % config.nHead !== 0) {
    throw new ModelConfigError(
      `${source}: n_embd (${config.nEmbd}) must be divisible by n_head (${config.nHead})`,
    );
  }
  if (
    j.scale_attn_weights === false ||
    j.scale_attn_by_inverse_layer_idx === true ||
    j.reorder_and_upcast_attn === true
  ) {
    throw new ModelConfigError(
      `${source}: only standard attention scaling is supported (scale_attn_weights true, scale_attn_by_inverse_layer_idx and reorder_and_upcast_attn false)`,
    );
  }
  if (j.tie_word_embeddings === false) {
    throw new ModelConfigError(
      `${source}: untied LM heads (tie_word_embeddings: false) are not supported`,
    );
  }
  return config;
}

/** config.json as transformers' GPT2Config.save_pretrained writes it (the fields that matter). */
export function gpt2ConfigToJson(
  c: Gpt2Config,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    activation_function: 'gelu_new',
    architectures: ['GPT2LMHeadModel'],
    attn_pdrop: c.attnPdrop,
    bos_token_id: c.vocabSize - 1,
    embd_pdrop: c.embdPdrop,
    eos_token_id: c.vocabSize - 1,
    initializer_range: 0.02,
    layer_norm_epsilon: c.layerNormEpsilon,
    model_type: 'gpt2',
    n_embd: c.nEmbd,
    n_head: c.nHead,
    n_inner: c.nInner,
    n_layer: c.nLayer,
    n_positions: c.nPositions,
    reorder_and_upcast_attn: false,
    resid_pdrop: c.residPdrop,
    scale_attn_by_inverse_layer_idx: false,
    scale_attn_weights: true,
    summary_activation: null,
    summary_first_dropout: 0.1,
    summary_proj_to_labels: true,
    summary_type: 'cls_index',
    summary_use_proj: true,
    tie_word_embeddings: true,
    torch_dtype: 'float32',
    use_cache: true,
    vocab_size: c.vocabSize,
    ...extra,
  };
}

/** Checks a config built in code (the CLI's init) with the same rules as a file. */
export function validateGpt2Config(c: Gpt2Config, source = 'model config'): Gpt2Config {
  return gpt2ConfigFromJson(gpt2ConfigToJson(c), source);
}

/** The family-neutral view of a GPT-2 config. */
export function gpt2ModelConfig(c: Gpt2Config): ModelConfig<Gpt2Config> {
  return {
    modelType: 'gpt2',
    vocabSize: c.vocabSize,
    contextLength: c.nPositions,
    hiddenSize: c.nEmbd,
    numLayers: c.nLayer,
    arch: c,
  };
}
