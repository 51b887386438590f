// What distinguishes the Llama family's model types before any field is
// read: the class each saves as (`architectures`), what its transformers
// config class assumes for a field config.json leaves out, and the groups
// of types that share a twist. A new type adds one entry to each table
// (the compiler asks for them: both are keyed by LlamaModelType).
import type { LlamaModelType } from './config.js';

export const ARCHITECTURES: Record<LlamaModelType, string> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
  gemma: 'GemmaForCausalLM',
  gemma2: 'Gemma2ForCausalLM',
  gemma3_text: 'Gemma3ForCausalLM',
  granite: 'GraniteForCausalLM',
  smollm3: 'SmolLM3ForCausalLM',
  phi3: 'Phi3ForCausalLM',
  olmo2: 'Olmo2ForCausalLM',
  olmo3: 'Olmo3ForCausalLM',
  exaone4: 'Exaone4ForCausalLM',
  glm: 'GlmForCausalLM',
  glm4: 'Glm4ForCausalLM',
};

/** Per type, what transformers' config class assumes for a field config.json leaves out. */
export interface TypeDefaults {
  maxPositions: number;
  slidingWindow: number | null;
  rmsNormEps: number;
  tieWordEmbeddings: boolean;
  /** null: num_attention_heads; hidden_size / num_attention_heads. */
  numKvHeads: number | null;
  headDim: number | null;
  ropeTheta: number;
}
const LLAMA_LIKE = {
  slidingWindow: null,
  rmsNormEps: 1e-6,
  numKvHeads: null,
  headDim: null,
  ropeTheta: 10000,
};
/** GlmConfig's and Glm4Config's (GLM-4-9B's). */
const GLM_DEFAULTS: TypeDefaults = {
  ...LLAMA_LIKE,
  maxPositions: 131072,
  rmsNormEps: 1.5625e-7,
  tieWordEmbeddings: false,
  numKvHeads: 2,
  headDim: 128,
};
export const DEFAULTS: Record<LlamaModelType, TypeDefaults> = {
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
  gemma2: {
    ...LLAMA_LIKE,
    maxPositions: 8192,
    slidingWindow: 4096,
    tieWordEmbeddings: true,
    numKvHeads: 4,
    headDim: 256,
  },
  gemma3_text: {
    ...LLAMA_LIKE,
    maxPositions: 131072,
    slidingWindow: 4096,
    tieWordEmbeddings: true,
    numKvHeads: 4,
    headDim: 256,
    ropeTheta: 1e6,
  },
  granite: { ...LLAMA_LIKE, maxPositions: 2048, tieWordEmbeddings: false },
  smollm3: {
    ...LLAMA_LIKE,
    maxPositions: 32768,
    tieWordEmbeddings: true,
    numKvHeads: 4,
    ropeTheta: 2e6,
  },
  phi3: { ...LLAMA_LIKE, maxPositions: 4096, rmsNormEps: 1e-5, tieWordEmbeddings: false },
  olmo2: { ...LLAMA_LIKE, maxPositions: 2048, rmsNormEps: 1e-5, tieWordEmbeddings: false },
  // Olmo3Config: Olmo2Config's, a window of 4096 and rope_theta 500000.
  olmo3: {
    ...LLAMA_LIKE,
    maxPositions: 2048,
    rmsNormEps: 1e-5,
    tieWordEmbeddings: false,
    slidingWindow: 4096,
    ropeTheta: 500000,
  },
  exaone4: {
    ...LLAMA_LIKE,
    maxPositions: 2048,
    rmsNormEps: 1e-5,
    tieWordEmbeddings: false,
    slidingWindow: 4096,
  },
  glm: GLM_DEFAULTS,
  glm4: GLM_DEFAULTS,
};

export const isGemma = (t: LlamaModelType) =>
  t === 'gemma' || t === 'gemma2' || t === 'gemma3_text';
/** GLM-4 (glm) and its 0414 models (glm4, which adds norms of both branch outputs). */
export const isGlm = (t: LlamaModelType) => t === 'glm' || t === 'glm4';
/** Gemma 2 and 3: the decoder layer with four norms, query_pre_attn_scalar and sliding layers. */
export const isLaterGemma = (t: LlamaModelType) => t === 'gemma2' || t === 'gemma3_text';
/** OLMo 2 and 3: norms after the branches only, q/k norms over all heads. */
export const isOlmo = (t: LlamaModelType) => t === 'olmo2' || t === 'olmo3';
/** OLMo's layer and EXAONE 4's (its decoder layer is OLMo 2's): norms after the branches only. */
export const postNormsOnly = (t: LlamaModelType) => isOlmo(t) || t === 'exaone4';
/**
 * The types whose layers slide by layer_types, and the default pattern
 * (every Nth layer full) when the file has none; null: every layer alike.
 */
export function slidingPattern(t: LlamaModelType): number | null {
  return t === 'gemma2' ? 2 : t === 'gemma3_text' ? 6 : t === 'olmo3' || t === 'exaone4' ? 4 : null;
}
