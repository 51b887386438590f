// Weights of a Hugging Face model folder: model.safetensors, or the shards a
// model.safetensors.index.json lists (read one at a time, so at most one
// shard's bytes are held besides the float32 weights). F16/BF16/F64 tensors
// are converted to float32. Every missing, unexpected or wrongly shaped
// tensor is reported by name, all at once.
import { access, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type TensorEntry,
  dequantizeNf4Into,
  float32Entry,
  readSafetensorsFile,
  toFloat32,
  writeFileAtomic,
  writeSafetensorsFile,
} from '@lorafleet/core';
import type { WeightMap } from './causal-lm.js';
import { BNB_STATE_SUFFIXES, readBnb4bitWeight } from './bnb-4bit.js';
import { ModelConfigError } from './gpt2/config.js';

export const CONFIG_FILE = 'config.json';
export const WEIGHTS_FILE = 'model.safetensors';
export const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';

/**
 * config.json fields that say how the weights were stored, not what the model
 * computes: a saved folder writes its own (its dtype; its weights are never
 * quantized).
 */
export const STORAGE_FIELDS: readonly string[] = [
  'dtype',
  'torch_dtype',
  'quantization_config',
  'transformers_version',
];

/** `json` without the fields `names` (a copy). */
export function withoutFields(
  json: Record<string, unknown>,
  names: Iterable<string>,
): Record<string, unknown> {
  const fields = { ...json };
  for (const name of names) delete fields[name];
  return fields;
}

/** `json` without STORAGE_FIELDS. */
export function withoutStorageFields(json: Record<string, unknown>): Record<string, unknown> {
  return withoutFields(json, STORAGE_FIELDS);
}

export interface WeightRules {
  /** Every tensor the model needs, by Hugging Face name. */
  expected: Map<string, number[]>;
  /** Stored tensors the model recomputes or ignores (rotary inv_freq buffers). */
  ignored?: RegExp;
  /** Tensors that may be present but are not loaded, with the shape they must have (a tied head). */
  unused?: Map<string, number[]>;
  /**
   * A stored name -> the model's name for it; null: a tensor the model never
   * computes, left unread (Gemma 3's vision tower). Absent: names as stored.
   */
  rename?: (stored: string) => string | null;
  /** Weights stored as bitsandbytes NF4 (a 4-bit folder's linear layers, [out, in]): bnb-4bit.ts. */
  nf4?: ReadonlySet<string>;
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/**
 * The files holding the weights: the single file, or every shard of the
 * index, in order; given `holding`, only the shards the index says hold a
 * tensor it picks.
 */
async function weightFiles(dir: string, holding?: (name: string) => boolean): Promise<string[]> {
  const single = join(dir, WEIGHTS_FILE);
  if (await exists(single)) return [single];
  const indexPath = join(dir, WEIGHTS_INDEX_FILE);
  if (!(await exists(indexPath))) {
    const hint = (await exists(join(dir, 'pytorch_model.bin')))
      ? ' (the folder has pytorch_model.bin: re-save it with save_pretrained(..., safe_serialization=True))'
      : '';
    throw new ModelConfigError(`${single}: not found, nor ${WEIGHTS_INDEX_FILE}${hint}`);
  }
  let index: unknown;
  try {
    index = JSON.parse(await readFile(indexPath, 'utf8'));
  } catch (err) {
    throw new ModelConfigError(`${indexPath}: not valid JSON (${(err as Error).message})`);
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new ModelConfigError(`${indexPath}: no "weight_map" object (tensor name -> shard file)`);
  }
  const entries = Object.entries(map as Record<string, unknown>);
  const files = [...new Set(entries.filter(([n]) => holding?.(n) ?? true).map(([, f]) => f))];
  const bad = files.find((f) => typeof f !== 'string' || f.includes('/') || f.includes('\\'));
  if (bad !== undefined)
    throw new ModelConfigError(
      `${indexPath}: shard ${JSON.stringify(bad)} is not a file name in the folder`,
    );
  for (const f of files as string[]) {
    if (!(await exists(join(dir, f))))
      throw new ModelConfigError(`${join(dir, f)}: not found (listed in ${WEIGHTS_INDEX_FILE})`);
  }
  return (files as string[]).map((f) => join(dir, f));
}

/** `name` as one of an NF4 weight's quantization-state tensors: [weight, suffix], else null. */
function nf4StateOf(name: string, nf4: ReadonlySet<string> | undefined): [string, string] | null {
  if (!nf4) return null;
  for (const suffix of BNB_STATE_SUFFIXES) {
    const weight = name.endsWith(`.${suffix}`) ? name.slice(0, -suffix.length - 1) : null;
    if (weight && nf4.has(weight)) return [weight, suffix];
  }
  return null;
}

/** The NF4 weights' entries: W from its bytes and state, its f32 values dequantized on each read. */
function nf4Weights(
  rules: WeightRules,
  raw: Map<string, TensorEntry>,
  states: Map<string, Map<string, TensorEntry>>,
  weights: WeightMap,
): void {
  for (const [name, entry] of raw) {
    const shape = rules.expected.get(name) as [number, number];
    const state = states.get(name);
    if (!state && entry.dtype !== 'U8') {
      // A module left unquantized (llm_int8_skip_modules): an ordinary tensor.
      if (entry.shape.join() !== shape.join())
        throw new ModelConfigError(
          `${name} has shape [${entry.shape}], the config needs [${shape}]`,
        );
      weights.set(name, { shape, data: toFloat32(entry, name, 'the 4-bit folder') });
      continue;
    }
    const nf4 = readBnb4bitWeight(entry, state ?? new Map(), shape, name);
    weights.set(name, {
      shape,
      nf4,
      get data() {
        const out = new Float32Array(shape[0] * shape[1]);
        dequantizeNf4Into(nf4, shape, false, out);
        return out;
      },
    });
  }
}

export async function readWeightsFolder(dir: string, rules: WeightRules): Promise<WeightMap> {
  const weights: WeightMap = new Map();
  const problems: string[] = [];
  const sameShape = (a: readonly number[], b: readonly number[]) =>
    a.length === b.length && a.every((d, i) => d === b[i]);
  // A 4-bit folder's linear weights and their states, joined once every shard is read.
  const nf4Raw = new Map<string, TensorEntry>();
  const nf4States = new Map<string, Map<string, TensorEntry>>();
  for (const path of await weightFiles(dir)) {
    const file = await readSafetensorsFile(path);
    for (const [stored, entry] of file.tensors) {
      const name = rules.rename ? rules.rename(stored) : stored;
      if (name === null || rules.ignored?.test(name)) continue;
      const state = nf4StateOf(name, rules.nf4);
      if (state) {
        const [weight, suffix] = state;
        nf4States.set(weight, (nf4States.get(weight) ?? new Map()).set(suffix, entry));
        continue;
      }
      if (rules.nf4?.has(name)) {
        if (nf4Raw.has(name)) problems.push(`${name} is stored twice (in ${path} again)`);
        nf4Raw.set(name, entry);
        continue;
      }
      const unused = rules.unused?.get(name);
      if (unused) {
        if (!sameShape(unused, entry.shape))
          problems.push(`${name} has shape [${entry.shape}], the config needs [${unused}]`);
        continue;
      }
      const shape = rules.expected.get(name);
      if (!shape) problems.push(`unexpected tensor ${name} [${entry.shape}]`);
      else if (weights.has(name)) problems.push(`${name} is stored twice (in ${path} again)`);
      else if (!sameShape(shape, entry.shape))
        problems.push(`${name} has shape [${entry.shape}], the config needs [${shape}]`);
      else weights.set(name, { shape, data: toFloat32(entry, name, path) });
    }
  }
  nf4Weights(rules, nf4Raw, nf4States, weights);
  for (const name of rules.expected.keys()) {
    if (!weights.has(name) && !problems.some((p) => p.startsWith(`${name} `)))
      problems.push(`missing tensor ${name}`);
  }
  if (problems.length > 0) {
    const shown = problems.slice(0, 12).join('\n  ');
    const more = problems.length > 12 ? `\n  ... and ${problems.length - 12} more` : '';
    throw new ModelConfigError(
      `${dir}: the weights do not match ${join(dir, CONFIG_FILE)}:\n  ${shown}${more}`,
    );
  }
  return weights;
}

/** The stored tensors that `wanted` picks, by their stored names, as float32. */
export async function readStoredTensors(
  dir: string,
  wanted: (name: string) => boolean,
): Promise<WeightMap> {
  const weights: WeightMap = new Map();
  for (const path of await weightFiles(dir, wanted)) {
    for (const [name, entry] of (await readSafetensorsFile(path)).tensors) {
      if (wanted(name))
        weights.set(name, { shape: entry.shape, data: toFloat32(entry, name, path) });
    }
  }
  return weights;
}

/** Writes config.json and one model.safetensors holding `shapes`' tensors, in that order. */
export async function writeWeightsFolder(
  dir: string,
  configJson: Record<string, unknown>,
  shapes: Map<string, number[]>,
  weights: WeightMap,
  dtype: 'F32' | 'F16' | 'BF16' = 'F32',
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tensors = new Map<string, TensorEntry>();
  for (const [name, shape] of shapes) {
    const w = weights.get(name);
    if (!w) throw new Error(`cannot save the model: weight ${name} is missing`);
    if (w.data.length !== shape.reduce((a, b) => a * b, 1)) {
      throw new Error(
        `cannot save the model: ${name} has ${w.data.length} values, shape [${shape}]`,
      );
    }
    tensors.set(name, float32Entry(w.data, shape, dtype));
  }
  await writeSafetensorsFile(join(dir, WEIGHTS_FILE), tensors, { format: 'pt' });
  // transformers v5 reads `dtype`; earlier versions `torch_dtype`.
  const json = { ...configJson, dtype: TORCH_DTYPE[dtype], torch_dtype: TORCH_DTYPE[dtype] };
  await writeFileAtomic(join(dir, CONFIG_FILE), configJsonText(json));
}

/**
 * config.json fields that transformers types as float alone: since v5 its
 * configs are strict dataclasses that refuse Gemma 2's final_logit_softcapping
 * written as 30 instead of 30.0, which is how JSON.stringify writes it.
 */
export const FLOAT_FIELDS: readonly string[] = [
  'initializer_range',
  'rms_norm_eps',
  'layer_norm_epsilon',
  'final_logit_softcapping',
  'attn_logit_softcapping',
];

/** config.json's text: two-space indents, FLOAT_FIELDS' whole numbers with a decimal point. */
export function configJsonText(json: Record<string, unknown>): string {
  const fields = FLOAT_FIELDS.join('|');
  const whole = new RegExp(`^(\\s*"(?:${fields})": )(-?\\d+)(,?)$`, 'gm');
  return JSON.stringify(json, null, 2).replace(whole, '$1$2.0$3') + '\n';
}

const TORCH_DTYPE = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' } as const;
