// Typed reads of a Llama-family config.json's fields (llama/config.ts):
// each refuses a bad value by name, in the file's own terms.
import type { LlamaModelType } from './config.js';
import { slidingPattern } from './model-types.js';
import { ModelConfigError } from '../gpt2/config.js';

type Json = Record<string, unknown>;
type Fail = (what: string) => never;

/** Gemma2Config's soft-capping defaults. */
const GEMMA2_SOFTCAP = { attn_logit_softcapping: 50, final_logit_softcapping: 30 };

/** Typed reads of config.json's fields, each refusing a bad value by name. */
export function fieldReader(j: Json, source: string) {
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
export function headShape(
  j: Json,
  { fail, int }: ReturnType<typeof fieldReader>,
  defaults: { numKvHeads: number | null; headDim: number | null },
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

/** Gemma 2's soft-capping (its defaults when absent; null: none); refused for every other type. */
export function softcap(
  j: Json,
  modelType: LlamaModelType,
  name: keyof typeof GEMMA2_SOFTCAP,
  fail: Fail,
): number | null {
  const v =
    modelType === 'gemma2' ? (j[name] === undefined ? GEMMA2_SOFTCAP[name] : j[name]) : j[name];
  if (v === undefined || v === null) return null;
  if (modelType !== 'gemma2') fail(`${name} ${JSON.stringify(v)} is not supported (only null)`);
  if (typeof v !== 'number' || !(v > 0))
    fail(`${name} is ${JSON.stringify(v)}, expected a positive number or null`);
  return v as number;
}

/**
 * Which positions each layer attends to and which layers rotate: the window
 * (Mistral's and Phi-3's for every layer; the sliding layers' of the types
 * with layer_types), the sliding layers, and the layers without rotary
 * embedding (SmolLM3's no_rope_layers; EXAONE 4's full layers, where any
 * layer slides).
 */
export function attentionLayout(
  j: Json,
  modelType: LlamaModelType,
  numLayers: number,
  defaultWindow: number | null,
  fail: Fail,
): { slidingWindow: number | null; slidingLayers: boolean[] | null; ropeLayers: boolean[] | null } {
  const pattern = slidingPattern(modelType);
  const window =
    modelType === 'mistral' || modelType === 'phi3' || pattern !== null
      ? j.sliding_window === undefined
        ? defaultWindow
        : j.sliding_window
      : null;
  if (window !== null && (!Number.isSafeInteger(window) || (window as number) < 1))
    fail(`sliding_window is ${JSON.stringify(window)}, expected a positive integer or null`);
  const exaone4 = modelType === 'exaone4';
  // EXAONE 4 without a window: every layer full, and rotating.
  const sliding =
    pattern === null || (exaone4 && window === null)
      ? null
      : slidingLayers(j, numLayers, pattern, fail);
  return {
    slidingWindow: window as number | null,
    slidingLayers: sliding,
    ropeLayers: modelType === 'smollm3' ? ropeLayers(j, numLayers, fail) : exaone4 ? sliding : null,
  };
}

/** Gemma 2's and 3's, OLMo 3's and EXAONE 4's layer_types, or their sliding_window_pattern (every Nth layer full). */
export function slidingLayers(j: Json, numLayers: number, defaultPattern: number, fail: Fail) {
  if (Array.isArray(j.layer_types)) {
    if (j.layer_types.length !== numLayers)
      fail(`layer_types has ${j.layer_types.length} entries for ${numLayers} layers`);
    return j.layer_types.map((t) =>
      t === 'sliding_attention'
        ? true
        : t === 'full_attention'
          ? false
          : fail(
              `layer_types: ${JSON.stringify(t)} is not supported (full_attention, sliding_attention)`,
            ),
    );
  }
  const pattern = j.sliding_window_pattern ?? j._sliding_window_pattern ?? defaultPattern;
  if (!Number.isSafeInteger(pattern) || (pattern as number) < 1)
    fail(
      `sliding_window_pattern is ${JSON.stringify(pattern)}, expected a positive integer (or give layer_types)`,
    );
  return Array.from({ length: numLayers }, (_, i) => (i + 1) % (pattern as number) !== 0);
}

/** SmolLM3's no_rope_layers (1: the layer rotates; at least one entry per layer), else every no_rope_layer_interval-th layer is NoPE. */
export function ropeLayers(j: Json, numLayers: number, fail: Fail) {
  if (Array.isArray(j.no_rope_layers)) {
    if (j.no_rope_layers.length < numLayers)
      fail(`no_rope_layers has ${j.no_rope_layers.length} entries for ${numLayers} layers`);
    return j.no_rope_layers
      .slice(0, numLayers)
      .map((v) =>
        v === 1 || v === 0 ? v === 1 : fail(`no_rope_layers: ${JSON.stringify(v)} is not 0 or 1`),
      );
  }
  const every = j.no_rope_layer_interval ?? 4;
  if (!Number.isSafeInteger(every) || (every as number) < 1)
    fail(`no_rope_layer_interval is ${JSON.stringify(every)}, expected a positive integer`);
  return Array.from({ length: numLayers }, (_, i) => (i + 1) % (every as number) !== 0);
}

export function tokenId(v: unknown): number | null {
  return Number.isSafeInteger(v) ? (v as number) : null;
}

export function attentionDropout(v: unknown, fail: Fail): number {
  const p = v ?? 0;
  if (typeof p !== 'number' || !(p >= 0 && p < 1))
    fail(`attention_dropout is ${JSON.stringify(v)}, expected a number in [0, 1)`);
  return p as number;
}
