// adapter_config.json as PEFT writes and reads it: the LoRA options of one
// adapter (rank and alpha, with their per-module patterns; targets; layers;
// bias; modules saved whole), checked field by field with PEFT's defaults.
export interface LoraAdapterConfig {
  r: number;
  loraAlpha: number;
  loraDropout: number;
  /** Module names (a list), or one regular expression matched against whole module paths. */
  targetModules: string[] | string;
  fanInFanOut: boolean;
  useRslora: boolean;
  /** DoRA: each adapted module also has a magnitude vector (lora_magnitude_vector); absent: false. */
  useDora?: boolean;
  /** Which biases were trained and saved: none, every bias, or those of LoRA-adapted modules. */
  bias: PeftBias;
  /** PEFT's init_lora_weights, where an adapter started ("pissa_niter_N": PiSSA by a randomized SVD). */
  initLoraWeights:
    boolean | 'gaussian' | 'pissa' | 'olora' | 'orthogonal' | `pissa_niter_${number}`;
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

export class PeftAdapterError extends Error {
  override name = 'PeftAdapterError';
}

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
    use_dora: c.useDora ?? false,
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
  const useDora = field('use_dora', false);
  if (typeof useDora !== 'boolean') bad('use_dora', 'true or false');
  const init = field('init_lora_weights', true);
  const named = ['gaussian', 'pissa', 'olora', 'orthogonal'];
  if (
    typeof init !== 'boolean' &&
    !(typeof init === 'string' && (named.includes(init) || /^pissa_niter_\d+$/.test(init)))
  ) {
    bad(
      'init_lora_weights',
      'true, false, "gaussian", "pissa", "pissa_niter_N", "olora" or "orthogonal"',
    );
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
    ...(useDora ? { useDora } : {}),
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
