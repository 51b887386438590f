// The rotary settings of a Llama-family config.json, in both layouts that
// transformers writes: rope_theta and rope_scaling (before v5; Gemma 3 adds
// rope_local_base_freq for its sliding-window layers), and rope_parameters
// (v5: the type, its fields and rope_theta; Gemma 3: one such object per
// layer type). As v5 reads a file, a rope_scaling replaces rope_parameters,
// and rope_theta fills in one that lacks it.
import type { LlamaConfig, LlamaModelType, RopeScaling } from './config.js';

export interface RopeSettings {
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  /** Gemma 3: the sliding-window layers' theta (no scaling); null: every layer rotates alike. */
  localRopeTheta: number | null;
}

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
  maxPositions: number,
  defaultTheta: number,
  fail: Fail,
): RopeSettings {
  const legacy = objectOrNull(j.rope_scaling, 'rope_scaling', fail);
  const params = objectOrNull(j.rope_parameters, 'rope_parameters', fail);
  const key = legacy !== null ? 'rope_scaling' : 'rope_parameters';
  const gemma3 = modelType === 'gemma3_text';
  let global = legacy ?? params ?? {};
  let local: Json | null = gemma3 ? { rope_theta: j.rope_local_base_freq ?? 10000 } : null;
  if (perLayerType(legacy ?? params)) {
    const kinds = Object.keys(legacy ?? params ?? {});
    if (!gemma3 || kinds.some((k) => !LAYER_TYPES.includes(k)))
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
  const ropeScaling = scalingFromJson(global, key, maxPositions, fail);
  if (ropeScaling !== null && modelType === 'gemma')
    fail(
      `${key} type ${JSON.stringify(ropeScaling.type)} is not supported for gemma (only "default")`,
    );
  if (local !== null && scalingFromJson(local, `${key}.sliding_attention`, maxPositions, fail))
    fail(`${key}.sliding_attention must not be scaled (only "default")`);
  return {
    ropeTheta: theta(global, j.rope_theta ?? defaultTheta),
    ropeScaling,
    localRopeTheta: local === null ? null : theta(local, j.rope_local_base_freq ?? 10000),
  };
}

/** The scaling of one rotary object (`key` names it in errors): "default" (none), "linear" or "llama3" (the type is rope_type, or type in older files). */
function scalingFromJson(
  r: Json,
  key: string,
  maxPositions: number,
  fail: Fail,
): RopeScaling | null {
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
  return fail(
    `${key} type ${JSON.stringify(type)} is not supported (supported: "default", "linear", "llama3")`,
  );
}

/** Both layouts, so that transformers before and since v5 read the same rotation. */
export function ropeToJson(c: LlamaConfig): Json {
  const s = c.ropeScaling;
  const scaling =
    s === null
      ? null
      : s.type === 'linear'
        ? { rope_type: 'linear', factor: s.factor }
        : {
            rope_type: 'llama3',
            factor: s.factor,
            low_freq_factor: s.lowFreqFactor,
            high_freq_factor: s.highFreqFactor,
            original_max_position_embeddings: s.originalMaxPositions,
          };
  const global = { ...(scaling ?? { rope_type: 'default' }), rope_theta: c.ropeTheta };
  if (c.localRopeTheta === null) {
    return { rope_theta: c.ropeTheta, rope_scaling: scaling, rope_parameters: global };
  }
  return {
    rope_theta: c.ropeTheta,
    rope_scaling: scaling,
    rope_local_base_freq: c.localRopeTheta,
    rope_parameters: {
      full_attention: global,
      sliding_attention: { rope_type: 'default', rope_theta: c.localRopeTheta },
    },
  };
}
