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
  targetModules: string[];
  fanInFanOut: boolean;
  useRslora: boolean;
  bias: 'none';
  initLoraWeights: boolean | 'gaussian' | 'pissa';
  baseModelNameOrPath: string | null;
  taskType: 'CAUSAL_LM' | null;
  rankPattern?: Record<string, number>;
  alphaPattern?: Record<string, number>;
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
}

export class PeftAdapterError extends Error {
  override name = 'PeftAdapterError';
}

export function peftKey(modulePath: string, which: 'A' | 'B'): string {
  return `base_model.model.${modulePath}.lora_${which}.weight`;
}

// PEFT drops the adapter name "default" on save, but older tools kept it.
const KEY_PATTERN = /^base_model\.model\.(.+)\.lora_([AB])(\.default)?\.weight$/;
const MODULE_PATH = /^[^.]+(\.[^.]+)*$/;

/** PEFT's lookup: the first pattern key that matches a whole trailing part of the path. */
function patternValue(pattern: Record<string, number> | undefined, modulePath: string) {
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
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: c.loraAlpha,
    lora_dropout: c.loraDropout,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    peft_type: 'LORA',
    r: c.r,
    rank_pattern: { ...c.rankPattern },
    revision: null,
    target_modules: [...c.targetModules],
    task_type: c.taskType,
    use_dora: false,
    use_rslora: c.useRslora,
  };
}

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
  if (typeof targets === 'string') {
    bad('target_modules', 'a list of module names (a regular-expression string is not supported)');
  }
  const isName = (t: unknown) => typeof t === 'string' && t !== '';
  if (!Array.isArray(targets) || targets.length === 0 || !targets.every(isName)) {
    bad('target_modules', 'a non-empty list of module names');
  }
  const fanInFanOut = field('fan_in_fan_out', false);
  if (typeof fanInFanOut !== 'boolean') bad('fan_in_fan_out', 'true or false');
  const useRslora = field('use_rslora', false);
  if (typeof useRslora !== 'boolean') bad('use_rslora', 'true or false');
  if (field('bias', 'none') !== 'none') bad('bias', '"none" (trained biases are not supported)');
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
    targetModules: [...(targets as string[])],
    fanInFanOut,
    useRslora,
    bias: 'none',
    initLoraWeights: init as LoraAdapterConfig['initLoraWeights'],
    baseModelNameOrPath: base as string | null,
    taskType: taskType as LoraAdapterConfig['taskType'],
  };
  const rankPattern = numberPattern(json, 'rank_pattern', source, true);
  const alphaPattern = numberPattern(json, 'alpha_pattern', source, false);
  if (rankPattern) config.rankPattern = rankPattern;
  if (alphaPattern) config.alphaPattern = alphaPattern;
  return config;
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
  for (const [path, m] of adapter.modules) {
    checkModule(path, m, config, dir);
    tensors.set(peftKey(path, 'A'), float32Entry(m.a, [m.r, m.inFeatures], options.dtype));
    tensors.set(peftKey(path, 'B'), float32Entry(m.b, [m.outFeatures, m.r], options.dtype));
  }
  await mkdir(dir, { recursive: true });
  // Weights first: a folder whose config exists is taken as complete.
  await writeSafetensorsFile(join(dir, ADAPTER_WEIGHTS_FILE), tensors, { format: 'pt' });
  await writeFileAtomic(join(dir, ADAPTER_CONFIG_FILE), `${JSON.stringify(configJson, null, 2)}\n`);
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

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

  const halves = new Map<string, { A?: [string, TensorEntry]; B?: [string, TensorEntry] }>();
  for (const [key, entry] of file.tensors) {
    const where = `${weightsPath}: tensor "${key}"`;
    const match = KEY_PATTERN.exec(key);
    if (!match) fail(where, `is not named like ${peftKey('<module>', 'A')} or lora_B`);
    const [, path, which] = match as unknown as [string, string, 'A' | 'B'];
    if (entry.shape.length !== 2 || entry.shape.includes(0)) {
      fail(where, `has shape [${entry.shape.join(', ')}]; LoRA weights are 2-D and non-empty`);
    }
    const pair = halves.get(path) ?? {};
    if (pair[which]) fail(where, `repeats "${pair[which][0]}", lora_${which} of "${path}"`);
    pair[which] = [key, entry];
    halves.set(path, pair);
  }

  const modules = new Map<string, LoraModuleWeights>();
  for (const [path, { A, B }] of halves) {
    const where = `${weightsPath}: module "${path}"`;
    if (!A) fail(where, `has "${B![0]}" but no lora_A to go with it`);
    if (!B) fail(where, `has "${A[0]}" but no lora_B to go with it`);
    const [r, inFeatures] = A[1].shape as [number, number];
    const [outFeatures, rB] = B[1].shape as [number, number];
    if (r !== rB) {
      const shapes = `lora_A is [${A[1].shape.join(', ')}], lora_B [${B[1].shape.join(', ')}]`;
      fail(where, `lora_A has rank ${r} but lora_B has rank ${rB} (${shapes})`);
    }
    const expected = moduleRank(config, path);
    if (r !== expected) {
      fail(where, `weights have rank ${r} but ${ADAPTER_CONFIG_FILE} gives ${expected}`);
    }
    const a = toFloat32(A[1], A[0], weightsPath);
    const b = toFloat32(B[1], B[0], weightsPath);
    modules.set(path, { a, b, r, inFeatures, outFeatures });
  }
  return { config, modules };
}
