// The rotary settings of a Llama-family config.json, in both layouts that
// transformers writes: rope_theta and rope_scaling (before v5; Gemma 3 adds
// rope_local_base_freq for its sliding-window layers), and rope_parameters
// (v5: the type, its fields and rope_theta; Gemma 3: one such object per
// layer type). As v5 reads a file, a rope_scaling replaces rope_parameters,
// and rope_theta fills in one that lacks it. Phi-3 adds LongRoPE and a
// partial rotation (partial_rotary_factor).
import type { LlamaConfig, LlamaModelType, RopeScaling } from './config.js';
import { isGlm } from './model-types.js';

export interface RopeSettings {
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  /** Gemma 3: the sliding-window layers' theta (no scaling); null: every layer rotates alike. */
  localRopeTheta: number | null;
  partialRotaryFactor: number;
}

/** What the rotary fields are read against. */
interface RopeContext {
  maxPositions: number;
  headDim: number;
}

/** A scaling's context: the model's, plus which fields the model type reads. */
interface ScalingContext extends RopeContext {
  modelType: LlamaModelType;
  /** The rotating dims of a head (partial_rotary_factor applied). */
  rotaryDim: number;
  /** Phi-3's top-level original_max_position_embeddings (PHI3_ORIGINAL_MAX when absent). */
  originalMax: unknown;
}

/** Phi3Config's original_max_position_embeddings when the file leaves it out. */
const PHI3_ORIGINAL_MAX = 4096;

type Json = Record<string, unknown>;
type Fail = (what: string) => never;

const LAYER_TYPES = ['full_attention', 'sliding_attention'];

function objectOrNull(v: unknown, key: string, fail: Fail): Json | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) fail(`${key} must be an object or null`);
  return v as Json;
}

/** rope_parameters (or rope_scaling) given per layer type rather than as one object. */
const perLayerType = (r: Json | null) =>
  r !== null &&
  Object.values(r).length > 0 &&
  Object.values(r).every((v) => typeof v === 'object' && v !== null);

export function ropeFromJson(
  j: Json,
  modelType: LlamaModelType,
  context: RopeContext,
  defaultTheta: number,
  fail: Fail,
): RopeSettings {
  const legacy = objectOrNull(j.rope_scaling, 'rope_scaling', fail);
  const params = objectOrNull(j.rope_parameters, 'rope_parameters', fail);
  const key = legacy !== null ? 'rope_scaling' : 'rope_parameters';
  // Gemma 3's sliding layers rotate with rope_local_base_freq, OLMo 3's with rope_theta; both unscaled.
  const gemma3 = modelType === 'gemma3_text';
  const perType = gemma3 || modelType === 'olmo3';
  const localTheta = gemma3 ? (j.rope_local_base_freq ?? 10000) : (j.rope_theta ?? defaultTheta);
  let global = legacy ?? params ?? {};
  let local: Json | null = perType ? { rope_theta: localTheta } : null;
  if (perLayerType(legacy ?? params)) {
    const kinds = Object.keys(legacy ?? params ?? {});
    if (!perType || kinds.some((k) => !LAYER_TYPES.includes(k)))
      fail(`${key} per layer type (${kinds.join(', ')}) is not supported`);
    global = ((legacy ?? params)!.full_attention ?? {}) as Json;
    local = ((legacy ?? params)!.sliding_attention ?? local) as Json;
  }
  const theta = (r: Json | null, fallback: unknown) => {
    const v = r?.rope_theta ?? fallback;
    if (typeof v !== 'number' || !(v > 0))
      fail(`rope_theta is ${JSON.stringify(v)}, expected a positive number`);
    return v as number;
  };
  // GlmConfig's default rotates half of each head.
  const glm = isGlm(modelType);
  const partialRotaryFactor = partialRotary(
    global.partial_rotary_factor ?? j.partial_rotary_factor ?? (glm ? 0.5 : 1),
  );
  const rotaryDim = Math.trunc(context.headDim * partialRotaryFactor);
  if (partialRotaryFactor !== 1 && modelType !== 'phi3' && !glm)
    fail(`partial_rotary_factor ${partialRotaryFactor} is not supported for ${modelType} (only 1)`);
  if (rotaryDim < 2 || rotaryDim % 2 !== 0)
    fail(
      `partial_rotary_factor ${partialRotaryFactor} rotates ${rotaryDim} of head_dim ${context.headDim}; expected an even number of dims`,
    );
  const scaling = {
    ...context,
    modelType,
    rotaryDim,
    originalMax: j.original_max_position_embeddings,
  };
  const ropeScaling = scalingFromJson(global, key, scaling, fail);
  if (ropeScaling !== null && modelType === 'gemma')
    fail(
      `${key} type ${JSON.stringify(ropeScaling.type)} is not supported for gemma (only "default")`,
    );
  if (local !== null && scalingFromJson(local, `${key}.sliding_attention`, scaling, fail))
    fail(`${key}.sliding_attention must not be scaled (only "default")`);
  return {
    ropeTheta: theta(global, j.rope_theta ?? defaultTheta),
    ropeScaling,
    localRopeTheta: local === null ? null : theta(local, localTheta),
    partialRotaryFactor,
  };

  function partialRotary(v: unknown): number {
    const f = v ?? 1;
    if (typeof f !== 'number' || !(f > 0 && f <= 1))
      fail(`partial_rotary_factor is ${JSON.stringify(v)}, expected a number in (0, 1]`);
    return f as number;
  }
}

/**
 * The scaling of one rotary object (`key` names it in errors): "default"
 * (none), "linear", "llama3" or Phi-3's "longrope" (the type is rope_type, or
 * type in older files).
 */
function scalingFromJson(
  r: Json,
  key: string,
  context: ScalingContext,
  fail: Fail,
): RopeScaling | null {
  const { maxPositions } = context;
  // v5 always names the type; an object that does not (rope_theta alone) means none.
  const type = r.rope_type ?? r.type ?? (key === 'rope_scaling' ? undefined : 'default');
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
  // Phi3Config reads the older names "su" and "yarn" as "longrope".
  if (context.modelType === 'phi3' && (type === 'longrope' || type === 'su' || type === 'yarn'))
    return longropeFromJson(r, key, context, fail);
  if (type === 'yarn') return yarnFromJson(r, key, context, fail);
  const phi3 = context.modelType === 'phi3' ? ', "longrope"' : ', "yarn"';
  return fail(
    `${key} type ${JSON.stringify(type)} is not supported (supported: "default", "linear", "llama3"${phi3})`,
  );
}

/** YaRN, as transformers v5's _compute_yarn_parameters reads it. */
function yarnFromJson(r: Json, key: string, context: ScalingContext, fail: Fail): RopeScaling {
  const positive = (name: string, fallback?: unknown): number => {
    const v = r[name] ?? fallback;
    if (typeof v !== 'number' || !(v > 0))
      fail(`${key}.${name} is ${JSON.stringify(r[name])}, expected a positive number`);
    return v as number;
  };
  const original = positive(
    'original_max_position_embeddings',
    context.originalMax ?? context.maxPositions,
  );
  const factor = positive('factor', context.maxPositions / original);
  // 0.1 m ln(s) + 1 (the paper's mscale), or DeepSeek's ratio of two such.
  const mscale = (m: number) => (factor <= 1 ? 1 : 0.1 * m * Math.log(factor) + 1);
  const [m, mAll] = [r.mscale, r.mscale_all_dim];
  const derived =
    typeof m === 'number' && typeof mAll === 'number' && m && mAll
      ? mscale(m) / mscale(mAll)
      : mscale(1);
  if (r.truncate !== undefined && typeof r.truncate !== 'boolean')
    fail(`${key}.truncate is ${JSON.stringify(r.truncate)}, expected true or false`);
  return {
    type: 'yarn',
    factor,
    originalMaxPositions: original,
    // `or`, as transformers: 0 or null means the default.
    betaFast: r.beta_fast ? positive('beta_fast') : 32,
    betaSlow: r.beta_slow ? positive('beta_slow') : 1,
    truncate: r.truncate !== false,
    attentionFactor:
      r.attention_factor === undefined || r.attention_factor === null
        ? derived
        : positive('attention_factor'),
  };
}

/** Phi-3's LongRoPE, as _compute_longrope_parameters reads it. */
function longropeFromJson(r: Json, key: string, context: ScalingContext, fail: Fail): RopeScaling {
  const factors = (name: string): number[] => {
    const v = r[name];
    if (!Array.isArray(v) || v.length !== context.rotaryDim / 2 || !v.every((x) => x > 0))
      fail(
        `${key}.${name} must list ${context.rotaryDim / 2} positive numbers (one per rotary frequency)`,
      );
    return v as number[];
  };
  const positive = (v: unknown, name: string): number => {
    if (typeof v !== 'number' || !(v > 0))
      fail(`${name} is ${JSON.stringify(v)}, expected a positive number`);
    return v as number;
  };
  const original = positive(
    r.original_max_position_embeddings ?? context.originalMax ?? PHI3_ORIGINAL_MAX,
    'original_max_position_embeddings',
  );
  const factor =
    r.factor === undefined || r.factor === null
      ? context.maxPositions / original
      : positive(r.factor, `${key}.factor`);
  const stated = r.attention_factor !== undefined && r.attention_factor !== null;
  return {
    type: 'longrope',
    shortFactor: factors('short_factor'),
    longFactor: factors('long_factor'),
    originalMaxPositions: original,
    // As the LongRoPE paper suggests (transformers' default).
    attentionFactor: stated
      ? positive(r.attention_factor, `${key}.attention_factor`)
      : factor <= 1
        ? 1
        : Math.sqrt(1 + Math.log(factor) / Math.log(original)),
    attentionFactorStated: stated,
  };
}

/** Both layouts, so that transformers before and since v5 read the same rotation. */
export function ropeToJson(c: LlamaConfig): Json {
  const scaling = scalingToJson(c.ropeScaling);
  const partial =
    c.partialRotaryFactor === 1 ? {} : { partial_rotary_factor: c.partialRotaryFactor };
  const s = c.ropeScaling;
  // v5 names the type rope_type and reads the original context from this object.
  const v5 =
    s?.type === 'longrope'
      ? { rope_type: 'longrope', original_max_position_embeddings: s.originalMaxPositions }
      : {};
  const global = {
    ...(scaling ?? { rope_type: 'default' }),
    ...v5,
    rope_theta: c.ropeTheta,
    ...partial,
  };
  if (c.localRopeTheta === null) {
    return { rope_theta: c.ropeTheta, rope_scaling: scaling, rope_parameters: global };
  }
  return {
    rope_theta: c.ropeTheta,
    rope_scaling: scaling,
    ...(c.modelType === 'gemma3_text' ? { rope_local_base_freq: c.localRopeTheta } : {}),
    rope_parameters: {
      full_attention: global,
      sliding_attention: { rope_type: 'default', rope_theta: c.localRopeTheta },
    },
  };
}

/**
 * One scaling's fields. LongRoPE is written as Phi-3's files on the Hub
 * write it (type, short_factor, long_factor; original_max_position_embeddings
 * at the top level), which older transformers require; attention_factor only
 * when the file it was read from stated one.
 */
function scalingToJson(s: RopeScaling | null): Json | null {
  if (s === null) return null;
  if (s.type === 'linear') return { rope_type: 'linear', factor: s.factor };
  if (s.type === 'yarn')
    return {
      rope_type: 'yarn',
      factor: s.factor,
      original_max_position_embeddings: s.originalMaxPositions,
      beta_fast: s.betaFast,
      beta_slow: s.betaSlow,
      attention_factor: s.attentionFactor,
      ...(s.truncate ? {} : { truncate: false }),
    };
  if (s.type === 'longrope')
    return {
      type: 'longrope',
      short_factor: s.shortFactor,
      long_factor: s.longFactor,
      ...(s.attentionFactorStated ? { attention_factor: s.attentionFactor } : {}),
    };
  return {
    rope_type: 'llama3',
    factor: s.factor,
    low_freq_factor: s.lowFreqFactor,
    high_freq_factor: s.highFreqFactor,
    original_max_position_embeddings: s.originalMaxPositions,
  };
}
