// A LoRA adapter as a PEFT folder (adapter_config.json + adapter_model.safetensors),
// so that Python's `PeftModel.from_pretrained` loads what we train and we load what
// it saves.
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

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

export interface LoraAdapterConfig {
  r: number;
  loraAlpha: number;
  loraDropout: number;
  /** Module names (a list), or one regular expression matched against whole module paths. */
  targetModules: string[] | string;
  fanInFanOut: boolean;
  useRslora: boolean;
  /** Which biases were trained and saved: none, every bias, or those of LoRA-adapted modules. */
  bias: PeftBias;
  initLoraWeights: boolean | 'gaussian' | 'pissa';
  baseModelNameOrPath: string | null;
  taskType: 'CAUSAL_LM' | null;
  rankPattern?: Record<string, number>;
  alphaPattern?: Record<string, number>;
  /** Only modules inside these numbered layers are adapted (a list target_modules only). */
  layersToTransform?: number[];
  /** The name of the layer list that layersToTransform indexes ("layers", "h"). */
  layersPattern?: string[];
  /** Modules trained in full and saved whole in the adapter (e.g. lm_head). */
  modulesToSave?: string[];
}

export type PeftBias = 'none' | 'all' | 'lora_only';
export const PEFT_BIAS: readonly PeftBias[] = ['none', 'all', 'lora_only'];

/** A whole tensor of the adapter file (a trained bias, a modules_to_save weight). */
export interface PeftTensor {
  shape: number[];
  data: Float32Array;
}

/** `a` is row-major [r, inFeatures], `b` row-major [outFeatures, r], as PEFT stores them. */
export interface LoraModuleWeights {
  a: Float32Array;
  b: Float32Array;
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

export class PeftAdapterError extends Error {
  override name = 'PeftAdapterError';
}

export function peftKey(modulePath: string, which: 'A' | 'B'): string {
  return `base_model.model.${modulePath}.lora_${which}.weight`;
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
const PREFIX = 'base_model.model.';
const MODULE_PATH = /^[^.]+(\.[^.]+)*$/;

/** PEFT's lookup (get_pattern_key): the first pattern key that matches a whole trailing part of the path. */
export function patternValue(pattern: Record<string, number> | undefined, modulePath: string) {
  for (const [key, value] of Object.entries(pattern ?? {})) {
    if (new RegExp(`^(?:.*\\.)?(?:${key})$`).test(modulePath)) return value;
  }
  return undefined;
}

export function moduleRank(config: LoraAdapterConfig, modulePath: string): number {
  return patternValue(config.rankPattern, modulePath) ?? config.r;
}

export function moduleAlpha(config: LoraAdapterConfig, modulePath: string): number {
  return patternValue(config.alphaPattern, modulePath) ?? config.loraAlpha;
}

/** Keys sorted as PEFT's `json.dumps(sort_keys=True)` writes them; the field set of PEFT 0.13. */
export function peftConfigToJson(c: LoraAdapterConfig): Record<string, unknown> {
  return {
    alpha_pattern: { ...c.alphaPattern },
    auto_mapping: null,
    base_model_name_or_path: c.baseModelNameOrPath,
    bias: c.bias,
    fan_in_fan_out: c.fanInFanOut,
    inference_mode: true,
    init_lora_weights: c.initLoraWeights,
    layer_replication: null,
    layers_pattern: c.layersPattern ? layersPatternJson(c.layersPattern) : null,
    layers_to_transform: c.layersToTransform ? [...c.layersToTransform] : null,
    loftq_config: {},
    lora_alpha: c.loraAlpha,
    lora_dropout: c.loraDropout,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: c.modulesToSave ? [...c.modulesToSave] : null,
    peft_type: 'LORA',
    r: c.r,
    rank_pattern: { ...c.rankPattern },
    revision: null,
    // PEFT writes a regular expression as a string and a set of names as a list.
    target_modules: typeof c.targetModules === 'string' ? c.targetModules : [...c.targetModules],
    task_type: c.taskType,
    use_dora: false,
    use_rslora: c.useRslora,
  };
}

/** One pattern as a string, several as a list, as PEFT's config holds them. */
const layersPatternJson = (p: string[]): string | string[] => (p.length === 1 ? p[0]! : [...p]);

function fail(source: string, what: string): never {
  throw new PeftAdapterError(`${source}: ${what}`);
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function numberPattern(json: Record<string, unknown>, field: string, source: string, int: boolean) {
  const raw = json[field] ?? {};
  if (!isRecord(raw))
    fail(source, `${field} must be an object of numbers, got ${JSON.stringify(raw)}`);
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(raw)) {
    const ok = int ? Number.isSafeInteger(v) && (v as number) > 0 : Number.isFinite(v);
    const expected = int ? 'a positive integer' : 'a number';
    if (!ok) fail(source, `${field} "${k}" is ${JSON.stringify(v)}, expected ${expected}`);
    try {
      new RegExp(k);
    } catch {
      fail(source, `${field} key "${k}" is not a valid regular expression`);
    }
    out[k] = v as number;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Missing optional fields take PEFT's defaults; fields we do not model are ignored. */
export function peftConfigFromJson(json: unknown, source: string): LoraAdapterConfig {
  if (!isRecord(json)) fail(source, 'adapter config must be a JSON object');
  const field = (name: string, fallback: unknown): unknown => json[name] ?? fallback;
  // Annotated so that TypeScript narrows after calls to it.
  const bad: (name: string, expected: string) => never = (name, expected) =>
    fail(source, `${name} is ${JSON.stringify(json[name])}, expected ${expected}`);

  if (json.peft_type !== 'LORA') bad('peft_type', '"LORA" (only LoRA adapters are supported)');
  const r = json.r;
  if (!Number.isSafeInteger(r) || (r as number) <= 0) bad('r', 'a positive integer');
  const loraAlpha = json.lora_alpha;
  if (!Number.isFinite(loraAlpha)) bad('lora_alpha', 'a number');
  const loraDropout = field('lora_dropout', 0);
  if (typeof loraDropout !== 'number' || !(loraDropout >= 0 && loraDropout < 1)) {
    bad('lora_dropout', 'a number in [0, 1)');
  }
  const targets = json.target_modules;
  const isName = (t: unknown) => typeof t === 'string' && t !== '';
  if (typeof targets === 'string') {
    if (targets === '') bad('target_modules', 'a regular expression or a list of module names');
    try {
      new RegExp(targets);
    } catch {
      bad('target_modules', 'a valid regular expression');
    }
  } else if (!Array.isArray(targets) || targets.length === 0 || !targets.every(isName)) {
    bad('target_modules', 'a non-empty list of module names or a regular-expression string');
  }
  const fanInFanOut = field('fan_in_fan_out', false);
  if (typeof fanInFanOut !== 'boolean') bad('fan_in_fan_out', 'true or false');
  const useRslora = field('use_rslora', false);
  if (typeof useRslora !== 'boolean') bad('use_rslora', 'true or false');
  const bias = field('bias', 'none');
  if (!PEFT_BIAS.includes(bias as PeftBias)) bad('bias', '"none", "all" or "lora_only"');
  if (field('use_dora', false) !== false) bad('use_dora', 'false (DoRA is not supported)');
  const init = field('init_lora_weights', true);
  if (typeof init !== 'boolean' && init !== 'gaussian' && init !== 'pissa') {
    bad('init_lora_weights', 'true, false, "gaussian" or "pissa"');
  }
  const base = field('base_model_name_or_path', null);
  if (base !== null && typeof base !== 'string') bad('base_model_name_or_path', 'a string or null');
  const taskType = field('task_type', null);
  if (taskType !== null && taskType !== 'CAUSAL_LM') bad('task_type', '"CAUSAL_LM" or null');

  const config: LoraAdapterConfig = {
    r: r as number,
    loraAlpha: loraAlpha as number,
    loraDropout,
    targetModules: typeof targets === 'string' ? targets : [...(targets as string[])],
    fanInFanOut,
    useRslora,
    bias: bias as PeftBias,
    initLoraWeights: init as LoraAdapterConfig['initLoraWeights'],
    baseModelNameOrPath: base as string | null,
    taskType: taskType as LoraAdapterConfig['taskType'],
  };
  const rankPattern = numberPattern(json, 'rank_pattern', source, true);
  const alphaPattern = numberPattern(json, 'alpha_pattern', source, false);
  if (rankPattern) config.rankPattern = rankPattern;
  if (alphaPattern) config.alphaPattern = alphaPattern;
  Object.assign(config, layerFields(json, source, typeof targets === 'string'));
  const modulesToSave = json.modules_to_save ?? null;
  if (modulesToSave !== null) {
    if (!Array.isArray(modulesToSave) || !modulesToSave.every(isName))
      bad('modules_to_save', 'a list of module names or null');
    if (modulesToSave.length > 0) config.modulesToSave = [...(modulesToSave as string[])];
  }
  return config;
}

/** layers_to_transform (an index or a list of them) and layers_pattern, as PEFT reads them. */
function layerFields(
  json: Record<string, unknown>,
  source: string,
  regexTargets: boolean,
): Pick<LoraAdapterConfig, 'layersToTransform' | 'layersPattern'> {
  const out: Pick<LoraAdapterConfig, 'layersToTransform' | 'layersPattern'> = {};
  const raw = json.layers_to_transform ?? null;
  if (raw !== null) {
    const list = typeof raw === 'number' ? [raw] : raw;
    const isIndex = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
    if (!Array.isArray(list) || !list.every(isIndex))
      fail(source, `layers_to_transform is ${JSON.stringify(raw)}, expected layer indices or null`);
    if (list.length > 0) out.layersToTransform = [...(list as number[])];
  }
  const pattern = json.layers_pattern ?? null;
  if (pattern !== null) {
    const list = typeof pattern === 'string' ? [pattern] : pattern;
    if (!Array.isArray(list) || !list.every((p) => typeof p === 'string' && p !== ''))
      fail(source, `layers_pattern is ${JSON.stringify(pattern)}, expected a name, a list or null`);
    if (list.length > 0) out.layersPattern = [...(list as string[])];
  }
  if (regexTargets && (out.layersToTransform || out.layersPattern)) {
    fail(
      source,
      'layers_to_transform and layers_pattern need target_modules as a list, not a string',
    );
  }
  return out;
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
    }
  };
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

export async function loadPeftAdapter(dir: string): Promise<PeftAdapter> {
  const configPath = join(dir, ADAPTER_CONFIG_FILE);
  const weightsPath = join(dir, ADAPTER_WEIGHTS_FILE);
  const needBoth = `a PEFT adapter folder needs both ${ADAPTER_CONFIG_FILE} and ${ADAPTER_WEIGHTS_FILE}`;
  if (!(await exists(configPath))) fail(configPath, `missing; ${needBoth}`);
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
  for (const [key, entry] of file.tensors) {
    const where = `${weightsPath}: tensor "${key}"`;
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
