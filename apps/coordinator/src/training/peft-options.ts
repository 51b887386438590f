// PEFT's LoraConfig options of `lorafleet train` (target_modules as a
// regex, layers_to_transform, rank/alpha patterns, modules_to_save, bias, DoRA,
// an adapter to train further), how they become RunConfig.lora, and the pairs
// that contradict each other.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ADAPTER_CONFIG_FILE,
  INIT_TITLES,
  LORA_INIT_KINDS,
  type LoraInit,
  PEFT_BIAS,
  changesBase,
  peftConfigFromJson,
} from '@lorafleet/core';
import { type ModelConfig, defaultLoraTargets } from '@lorafleet/models';
import type { RunConfig } from '@lorafleet/worker';
import { UsageError, defineOptions, givenOptions } from '../args.js';
import type { TrainOptions } from './train-spec.js';

export const peftOptions = defineOptions({
  target: {
    aliases: ['target_modules'],
    affects: 'math',
    kind: 'list',
    value: 'NAMES',
    description:
      "modules to adapt, PEFT names (GPT-2: c_attn, c_proj, c_fc; Llama: q_proj ... down_proj; Phi-3: qkv_proj, o_proj, gate_up_proj, down_proj; the token embedding: wte / embed_tokens) or all-linear (default: PEFT's for the model type: c_attn for GPT-2, q_proj,v_proj for Llama, all four for Phi-3)",
  },
  'target-regex': {
    affects: 'math',
    kind: 'string',
    value: 'REGEX',
    description:
      'modules to adapt as one regular expression over whole module paths (PEFT target_modules as a string), e.g. ".*\\.(q_proj|v_proj)"',
  },
  'layers-to-transform': {
    affects: 'math',
    kind: 'list',
    value: 'I,J,...',
    description:
      'adapt only the --target modules inside these layer numbers (PEFT layers_to_transform)',
  },
  'layers-pattern': {
    affects: 'math',
    kind: 'list',
    value: 'NAMES',
    description:
      'the name of the layer list --layers-to-transform numbers (PEFT layers_pattern: layers for Llama, h for GPT-2; default: any)',
  },
  'rank-pattern': {
    affects: 'math',
    kind: 'list',
    value: 'REGEX=R,...',
    description:
      'per-module rank instead of --lora-r where REGEX matches the end of the module path (PEFT rank_pattern), e.g. down_proj=16',
  },
  'alpha-pattern': {
    affects: 'math',
    kind: 'list',
    value: 'REGEX=A,...',
    description: 'per-module alpha instead of --lora-alpha (PEFT alpha_pattern), e.g. down_proj=32',
  },
  'modules-to-save': {
    affects: 'math',
    kind: 'list',
    value: 'NAMES',
    description:
      'modules trained in full and saved whole in the adapter (PEFT modules_to_save), e.g. lm_head or model.norm',
  },
  'use-dora': {
    aliases: ['use_dora'],
    affects: 'math',
    kind: 'boolean',
    description:
      'DoRA (PEFT use_dora): each adapted linear layer also trains a magnitude per output, W = m (W0 + s B A) / ||W0 + s B A||; linear layers only',
  },
  'init-adapter': {
    aliases: ['resume_adapter'],
    affects: 'math',
    kind: 'string',
    value: 'DIR',
    description:
      "a PEFT adapter folder to train further (PEFT's PeftModel.from_pretrained(..., is_trainable=True)): the adapter starts from its values, and its adapter_config.json sets the rank, alpha, targets and the other LoRA options",
  },
  'lora-bias': {
    aliases: ['bias'],
    affects: 'math',
    kind: 'string',
    choices: PEFT_BIAS,
    default: 'none',
    description:
      'biases trained and saved in the adapter (PEFT bias): none, all, or lora_only (those of adapted modules)',
  },
});

/** The options above that configure LoRA (meaningless with --full-finetune). */
export const PEFT_OPTION_NAMES = Object.keys(peftOptions);

/** "REGEX=N" items -> { REGEX: N }, naming the option on a bad item. */
function patternOption(flag: string, items: readonly string[] | undefined, int: boolean) {
  if (!items) return undefined;
  const out: Record<string, number> = {};
  for (const item of items) {
    const at = item.lastIndexOf('=');
    const [key, value] = [item.slice(0, at), Number(item.slice(at + 1))];
    const ok = at > 0 && (int ? Number.isSafeInteger(value) && value > 0 : value > 0);
    if (!ok) {
      throw new UsageError(
        `train: --${flag} item "${item}" must be REGEX=${int ? 'R (a positive integer)' : 'A (a positive number)'}`,
      );
    }
    try {
      new RegExp(key);
    } catch (err) {
      throw new UsageError(
        `train: --${flag} key "${key}" is not a regular expression (${(err as Error).message})`,
      );
    }
    out[key] = value;
  }
  return out;
}

function layerNumbers(items: readonly string[] | undefined): number[] | undefined {
  if (!items) return undefined;
  return items.map((item) => {
    const n = Number(item);
    if (!/^\d+$/.test(item) || !Number.isSafeInteger(n)) {
      throw new UsageError(
        `train: --layers-to-transform item "${item}" is not a layer number (0, 1, ...)`,
      );
    }
    return n;
  });
}

/** What --init-adapter's adapter_config.json sets, refused beside it. */
const SET_BY_ADAPTER = [
  'lora-r',
  'lora-alpha',
  'rslora',
  'init',
  ...PEFT_OPTION_NAMES.filter((name) => name !== 'init-adapter'),
];

/**
 * RunConfig.lora of --init-adapter: its adapter_config.json's settings (the
 * LoRA dropout too, unless --lora-dropout is given).
 */
export async function initAdapterLora(o: TrainOptions): Promise<RunConfig['lora']> {
  const dir = o.initAdapter!;
  const path = join(dir, ADAPTER_CONFIG_FILE);
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new UsageError(
      `train: --init-adapter ${dir}: cannot read ${path} (${(error as Error).message}); give a PEFT adapter folder (adapter_config.json, adapter_model.safetensors), e.g. a run's adapter/`,
    );
  }
  const c = peftConfigFromJson(json, path);
  const lora: RunConfig['lora'] = {
    r: c.r,
    alpha: c.loraAlpha,
    dropout: givenOptions(o).has('lora-dropout') ? o.loraDropout : c.loraDropout,
    rslora: c.useRslora,
    init: c.initLoraWeights === 'gaussian' ? 'gaussian' : 'kaiming',
    targets: typeof c.targetModules === 'string' ? c.targetModules : [...c.targetModules],
  };
  if (c.layersToTransform) lora.layersToTransform = [...c.layersToTransform];
  if (c.layersPattern) lora.layersPattern = [...c.layersPattern];
  if (c.rankPattern && Object.keys(c.rankPattern).length > 0)
    lora.rankPattern = { ...c.rankPattern };
  if (c.alphaPattern && Object.keys(c.alphaPattern).length > 0)
    lora.alphaPattern = { ...c.alphaPattern };
  if (c.modulesToSave?.length) lora.modulesToSave = [...c.modulesToSave];
  if (c.bias !== 'none') lora.bias = c.bias;
  if (c.useDora) lora.useDora = true;
  return lora;
}

/**
 * --init as PEFT's init_lora_weights names it: an initialisation's kind, or
 * "pissa_niter_N" (PiSSA by a randomized SVD of N power iterations).
 */
export function parseInit(value: string): { init: LoraInit['kind']; pissaNiter?: number } {
  const niter = /^pissa_niter_(\d+)$/.exec(value);
  if (niter) return { init: 'pissa', pissaNiter: Number(niter[1]) };
  const init = LORA_INIT_KINDS.find((k) => k === value);
  if (init) return { init };
  throw new UsageError(
    `train: --init ${value}: give one of ${LORA_INIT_KINDS.join(', ')}, or pissa_niter_N (PEFT's PiSSA by a randomized SVD of N power iterations, e.g. pissa_niter_4)`,
  );
}

/** RunConfig.lora from the options; PEFT's defaults leave their fields out. */
export function peftLoraFrom(o: TrainOptions, modelConfig: ModelConfig): RunConfig['lora'] {
  const lora: RunConfig['lora'] = {
    r: o.loraR,
    alpha: o.loraAlpha,
    dropout: o.loraDropout,
    rslora: o.rslora,
    ...parseInit(o.init),
    targets: o.targetRegex ?? o.target ?? [...defaultLoraTargets(modelConfig)],
  };
  const layers = layerNumbers(o.layersToTransform);
  if (layers) lora.layersToTransform = layers;
  if (o.layersPattern) lora.layersPattern = [...o.layersPattern];
  const rank = patternOption('rank-pattern', o.rankPattern, true);
  const alpha = patternOption('alpha-pattern', o.alphaPattern, false);
  if (rank) lora.rankPattern = rank;
  if (alpha) lora.alphaPattern = alpha;
  if (o.modulesToSave) lora.modulesToSave = [...o.modulesToSave];
  if (o.loraBias !== 'none') lora.bias = o.loraBias;
  if (o.useDora) lora.useDora = true;
  if (o.init === 'orthogonal') checkEvenRanks(lora);
  return lora;
}

/** --init orthogonal splits an orthogonal matrix's rows in two: every rank must be even (PEFT's check). */
function checkEvenRanks(lora: RunConfig['lora']): void {
  const odd = [
    ['--lora-r', lora.r] as const,
    ...Object.entries(lora.rankPattern ?? {}).map(([k, r]) => [`--rank-pattern ${k}`, r] as const),
  ].find(([, r]) => r % 2 !== 0);
  if (odd)
    throw new UsageError(
      `train: --init orthogonal needs even LoRA ranks (it pairs an orthogonal matrix's odd and even rows), but ${odd[0]} is ${odd[1]}`,
    );
}

/** Pairs PEFT's LoraConfig refuses, as `clash(a, b, why)` errors (exit 2). */
export function checkPeftOptions(
  given: ReadonlySet<string>,
  clash: (a: string, b: string, why: string) => Error,
  init: string,
): void {
  if (given.has('init-adapter')) {
    const set = SET_BY_ADAPTER.find((name) => given.has(name));
    if (set) throw clash('init-adapter', set, "the adapter's adapter_config.json sets it");
  }
  if (given.has('target') && given.has('target-regex'))
    throw clash('target', 'target-regex', 'give the modules as names or as one regular expression');
  for (const layerOption of ['layers-to-transform', 'layers-pattern']) {
    if (given.has('target-regex') && given.has(layerOption)) {
      throw clash(
        'target-regex',
        layerOption,
        `PEFT applies --${layerOption} to a list of target names only; put the layer numbers in the regular expression`,
      );
    }
  }
  if (given.has('layers-pattern') && !given.has('layers-to-transform')) {
    throw new UsageError(
      'train: --layers-pattern names the layers --layers-to-transform numbers: give both',
    );
  }
  const { init: kind } = parseInit(init);
  if (changesBase(kind)) {
    const name = INIT_TITLES[kind];
    if (given.has('use-dora'))
      throw clash(
        'init',
        'use-dora',
        `a ${name} adapter is converted for the original weights at save, which DoRA's magnitudes do not survive`,
      );
    const pattern = ['rank-pattern', 'alpha-pattern'].find((p) => given.has(p));
    if (pattern)
      throw clash(
        'init',
        pattern,
        `a ${name} adapter is saved as one rank-2r LoRA, without per-module ranks`,
      );
  }
}

/** The log's words for what LoRA adapts: "q_proj, v_proj (layers 0, 1); lm_head in full; bias all". */
export function describeLora(lora: RunConfig['lora']): string {
  const t = lora.targets;
  const parts = [typeof t === 'string' ? `/${t}/` : t.join(', ')];
  if (lora.layersToTransform) parts[0] += ` (layers ${lora.layersToTransform.join(', ')})`;
  if (lora.modulesToSave) parts.push(`${lora.modulesToSave.join(', ')} in full`);
  if (lora.bias) parts.push(`bias ${lora.bias}`);
  if (lora.useDora) parts.push('DoRA');
  return parts.join('; ');
}
