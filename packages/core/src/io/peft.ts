// A LoRA adapter as a PEFT folder (adapter_config.json + adapter_model.safetensors),
// so that Python's `PeftModel.from_pretrained` loads what we train and we load what
// it saves. The config file itself: peft-config.ts.
import { access, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  float32Entry,
  readSafetensorsFile,
  toFloat32,
  writeFileAtomic,
  writeSafetensorsFile,
  type TensorEntry,
} from './safetensors.js';
import {
  type LoraAdapterConfig,
  PeftAdapterError,
  moduleRank,
  peftConfigFromJson,
  peftConfigToJson,
} from './peft-config.js';

export {
  type LoraAdapterConfig,
  type PeftBias,
  PEFT_BIAS,
  PeftAdapterError,
  patternValue,
  moduleRank,
  moduleAlpha,
  peftConfigToJson,
  peftConfigFromJson,
} from './peft-config.js';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

/** A whole tensor of the adapter file (a trained bias, a modules_to_save weight). */
export interface PeftTensor {
  shape: number[];
  data: Float32Array;
}

/** `a` is row-major [r, inFeatures], `b` row-major [outFeatures, r], as PEFT stores them. */
export interface LoraModuleWeights {
  a: Float32Array;
  b: Float32Array;
  /** DoRA's magnitude [outFeatures] (use_dora; PEFT's "<m>.lora_magnitude_vector"). */
  magnitude?: Float32Array;
  r: number;
  inFeatures: number;
  outFeatures: number;
}

/** Modules are keyed by their path in the base model, e.g. "transformer.h.0.attn.c_attn". */
export interface PeftAdapter {
  config: LoraAdapterConfig;
  modules: Map<string, LoraModuleWeights>;
  /**
   * PEFT's lora.Embedding layers by module path: `a` is lora_embedding_A
   * [r, V] (inFeatures = V), `b` lora_embedding_B [C, r] (outFeatures = C).
   */
  embeddings?: Map<string, LoraModuleWeights>;
  /**
   * Whole tensors by their key without "base_model.model.", as PEFT saves
   * them: "lm_head.weight" (modules_to_save), "<module>.base_layer.bias" (the
   * bias of an adapted module), "<module>.bias" (any other bias).
   */
  tensors?: Map<string, PeftTensor>;
}

export function peftKey(modulePath: string, which: 'A' | 'B'): string {
  return `base_model.model.${modulePath}.lora_${which}.weight`;
}

export function peftMagnitudeKey(modulePath: string): string {
  return `base_model.model.${modulePath}.lora_magnitude_vector`;
}

export function peftEmbeddingKey(modulePath: string, which: 'A' | 'B'): string {
  return `base_model.model.${modulePath}.lora_embedding_${which}`;
}

/**
 * A trainable parameter's slot name (params.ts) -> its key in the adapter file:
 * "<m>.lora_A" -> "base_model.model.<m>.lora_A.weight"; any other slot
 * ("<m>.lora_embedding_B", "lm_head.weight", "<m>.base_layer.bias") is the key
 * without its prefix.
 */
export function peftSlotKey(slotName: string): string {
  const linear = /^(.*)\.lora_([AB])$/.exec(slotName);
  return linear ? peftKey(linear[1]!, linear[2] as 'A' | 'B') : `base_model.model.${slotName}`;
}

// PEFT drops the adapter name "default" on save, but older tools kept it.
const KEY_PATTERN = /^base_model\.model\.(.+)\.lora_([AB])(\.default)?\.weight$/;
const EMBEDDING_KEY = /^base_model\.model\.(.+)\.lora_embedding_([AB])(\.default)?$/;
// PEFT saves DoRA's magnitude without ".weight" (older versions kept ".default.weight").
const MAGNITUDE_KEY = /^base_model\.model\.(.+)\.lora_magnitude_vector(\.default)?(\.weight)?$/;
const PREFIX = 'base_model.model.';
const MODULE_PATH = /^[^.]+(\.[^.]+)*$/;

function fail(source: string, what: string): never {
  throw new PeftAdapterError(`${source}: ${what}`);
}

function checkModule(path: string, m: LoraModuleWeights, config: LoraAdapterConfig, dir: string) {
  const where = `${dir}: module "${path}"`;
  if (!MODULE_PATH.test(path)) fail(where, 'not a dotted module path');
  const dims = { r: m.r, inFeatures: m.inFeatures, outFeatures: m.outFeatures };
  for (const [name, v] of Object.entries(dims)) {
    if (!Number.isSafeInteger(v) || v <= 0) fail(where, `${name} is ${v}, not a positive integer`);
  }
  const expected = moduleRank(config, path);
  if (m.r !== expected) fail(where, `rank ${m.r}, but r or rank_pattern gives ${expected}`);
  if (m.a.length !== m.r * m.inFeatures) {
    fail(where, `lora_A has ${m.a.length} values, not r * inFeatures = ${m.r * m.inFeatures}`);
  }
  if (m.b.length !== m.outFeatures * m.r) {
    fail(where, `lora_B has ${m.b.length} values, not outFeatures * r = ${m.outFeatures * m.r}`);
  }
  checkMagnitude(where, m, config);
}

/** A DoRA magnitude [outFeatures] on every module of a use_dora adapter, and on no other. */
function checkMagnitude(where: string, m: LoraModuleWeights, config: LoraAdapterConfig) {
  const dora = config.useDora === true;
  if (dora && !m.magnitude) fail(where, 'use_dora is true but it has no lora_magnitude_vector');
  if (!dora && m.magnitude) fail(where, 'has a lora_magnitude_vector but use_dora is false');
  if (m.magnitude && m.magnitude.length !== m.outFeatures)
    fail(where, `lora_magnitude_vector has ${m.magnitude.length} values, not ${m.outFeatures}`);
}

export async function savePeftAdapter(
  dir: string,
  adapter: PeftAdapter,
  options: { dtype?: 'F32' | 'F16' | 'BF16' } = {},
): Promise<void> {
  // Round-tripping the config through the reader refuses anything we could not load back.
  const configJson = peftConfigToJson(adapter.config);
  const config = peftConfigFromJson(configJson, `${dir}: config`);
  const tensors = new Map<string, TensorEntry>();
  const pairs = (modules: Map<string, LoraModuleWeights> | undefined, key: typeof peftKey) => {
    for (const [path, m] of modules ?? []) {
      checkModule(path, m, config, dir);
      tensors.set(key(path, 'A'), float32Entry(m.a, [m.r, m.inFeatures], options.dtype));
      tensors.set(key(path, 'B'), float32Entry(m.b, [m.outFeatures, m.r], options.dtype));
      if (m.magnitude)
        tensors.set(
          peftMagnitudeKey(path),
          float32Entry(m.magnitude, [m.outFeatures], options.dtype),
        );
    }
  };
  if (config.useDora && adapter.embeddings?.size)
    fail(dir, 'DoRA (use_dora) is supported on linear layers only, not on embeddings');
  pairs(adapter.modules, peftKey);
  pairs(adapter.embeddings, peftEmbeddingKey);
  for (const [name, t] of adapter.tensors ?? []) {
    const key = `${PREFIX}${name}`;
    const why = wholeTensorProblem(key, config);
    if (why) fail(`${dir}: tensor "${key}"`, why);
    tensors.set(key, float32Entry(t.data, t.shape, options.dtype));
  }
  await mkdir(dir, { recursive: true });
  // Weights first: a folder whose config exists is taken as complete.
  await writeSafetensorsFile(join(dir, ADAPTER_WEIGHTS_FILE), tensors, { format: 'pt' });
  await writeFileAtomic(join(dir, ADAPTER_CONFIG_FILE), `${JSON.stringify(configJson, null, 2)}\n`);
}

/**
 * Why a whole tensor may not be in this adapter, or undefined when it may: a
 * bias with bias != "none", a tensor inside a modules_to_save module (PEFT's
 * endswith match on every enclosing module), or the base table of an adapted
 * embedding ("<m>.base_layer.weight", which PEFT saves by default).
 */
function wholeTensorProblem(key: string, config: LoraAdapterConfig): string | undefined {
  const name = key.slice(PREFIX.length);
  const names = `is not named like ${peftKey('<module>', 'A')}, lora_B or lora_embedding_A/B`;
  if (!key.startsWith(PREFIX) || !MODULE_PATH.test(name)) return names;
  if (name.endsWith('.bias') && config.bias !== 'none') return undefined;
  if (name.endsWith('.base_layer.weight')) return undefined;
  const parts = name.split('.');
  const modules = parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('.'));
  const toSave = config.modulesToSave ?? [];
  if (modules.some((m) => toSave.some((s) => m.endsWith(s)))) return undefined;
  return `${names}, and as a whole tensor it is neither a bias (bias is "${config.bias}") nor inside modules_to_save (${JSON.stringify(config.modulesToSave ?? null)})`;
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

type Halves = Map<string, { A?: [string, TensorEntry]; B?: [string, TensorEntry] }>;

/** What a folder without adapter_config.json is instead, when it is something we know. */
async function notAnAdapter(dir: string): Promise<string> {
  if (!(await exists(dir))) return ` (${dir} does not exist)`;
  if (await exists(join(dir, 'adapter', ADAPTER_CONFIG_FILE)))
    return ` (${dir} is a training run's folder: its adapter is ${join(dir, 'adapter')})`;
  if (await exists(join(dir, 'config.json')))
    return ` (${dir} holds a model, config.json: name the adapter's folder, e.g. OUT/adapter of lorafleet train)`;
  return '';
}

export async function loadPeftAdapter(dir: string): Promise<PeftAdapter> {
  const configPath = join(dir, ADAPTER_CONFIG_FILE);
  const weightsPath = join(dir, ADAPTER_WEIGHTS_FILE);
  const needBoth = `a PEFT adapter folder needs both ${ADAPTER_CONFIG_FILE} and ${ADAPTER_WEIGHTS_FILE}`;
  if (!(await exists(configPath)))
    fail(configPath, `missing; ${needBoth}${await notAnAdapter(dir)}`);
  if (!(await exists(weightsPath))) {
    const pickle = (await exists(join(dir, 'adapter_model.bin')))
      ? ' (adapter_model.bin, a PyTorch pickle, is not read: save with safe_serialization=True)'
      : '';
    fail(weightsPath, `missing; ${needBoth}${pickle}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(await readFile(configPath, 'utf8'));
  } catch (err) {
    fail(configPath, `not valid JSON (${(err as Error).message})`);
  }
  const config = peftConfigFromJson(json, configPath);
  const file = await readSafetensorsFile(weightsPath);

  const linear: Halves = new Map();
  const embedding: Halves = new Map();
  const tensors = new Map<string, PeftTensor>();
  const magnitudes = new Map<string, Float32Array>();
  for (const [key, entry] of file.tensors) {
    const where = `${weightsPath}: tensor "${key}"`;
    const magnitude = MAGNITUDE_KEY.exec(key);
    if (magnitude) {
      if (entry.shape.length !== 1) fail(where, `has shape [${entry.shape.join(', ')}], not [out]`);
      magnitudes.set(magnitude[1]!, toFloat32(entry, key, weightsPath));
      continue;
    }
    const match = KEY_PATTERN.exec(key) ?? EMBEDDING_KEY.exec(key);
    if (!match) {
      const why = wholeTensorProblem(key, config);
      if (why) fail(where, why);
      tensors.set(key.slice(PREFIX.length), {
        shape: [...entry.shape],
        data: toFloat32(entry, key, weightsPath),
      });
      continue;
    }
    const [, path, which] = match as unknown as [string, string, 'A' | 'B'];
    if (entry.shape.length !== 2 || entry.shape.includes(0)) {
      fail(where, `has shape [${entry.shape.join(', ')}]; LoRA weights are 2-D and non-empty`);
    }
    const halves = KEY_PATTERN.test(key) ? linear : embedding;
    const pair = halves.get(path) ?? {};
    if (pair[which]) fail(where, `repeats "${pair[which][0]}", lora_${which} of "${path}"`);
    pair[which] = [key, entry];
    halves.set(path, pair);
  }
  const adapter: PeftAdapter = {
    config,
    modules: pairModules(linear, config, weightsPath, 'lora'),
  };
  for (const [path, m] of magnitudes) {
    const module = adapter.modules.get(path);
    if (!module) fail(weightsPath, `"${path}" has a lora_magnitude_vector but no lora_A/lora_B`);
    module.magnitude = m;
  }
  for (const [path, m] of adapter.modules)
    checkMagnitude(`${weightsPath}: module "${path}"`, m, config);
  if (embedding.size > 0)
    adapter.embeddings = pairModules(embedding, config, weightsPath, 'lora_embedding');
  if (tensors.size > 0) adapter.tensors = tensors;
  return adapter;
}

/** Each module's A and B (of a linear or an embedding: the same layout), checked. */
function pairModules(
  halves: Halves,
  config: LoraAdapterConfig,
  weightsPath: string,
  kind: 'lora' | 'lora_embedding',
) {
  const modules = new Map<string, LoraModuleWeights>();
  const [nameA, nameB] = [`${kind}_A`, `${kind}_B`];
  for (const [path, { A, B }] of halves) {
    const where = `${weightsPath}: module "${path}"`;
    if (!A) fail(where, `has "${B![0]}" but no ${nameA} to go with it`);
    if (!B) fail(where, `has "${A[0]}" but no ${nameB} to go with it`);
    const [r, inFeatures] = A[1].shape as [number, number];
    const [outFeatures, rB] = B[1].shape as [number, number];
    if (r !== rB) {
      const shapes = `${nameA} is [${A[1].shape.join(', ')}], ${nameB} [${B[1].shape.join(', ')}]`;
      fail(where, `${nameA} has rank ${r} but ${nameB} has rank ${rB} (${shapes})`);
    }
    const expected = moduleRank(config, path);
    if (r !== expected) {
      fail(where, `weights have rank ${r} but ${ADAPTER_CONFIG_FILE} gives ${expected}`);
    }
    const a = toFloat32(A[1], A[0], weightsPath);
    const b = toFloat32(B[1], B[0], weightsPath);
    modules.set(path, { a, b, r, inFeatures, outFeatures });
  }
  return modules;
}
