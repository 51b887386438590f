// PEFT's LoraConfig options on a CausalLM: which modules get LoRA
// (target_modules as names or a regex, layers_to_transform, modules_to_save
// excluded), each module's rank and alpha (rank_pattern, alpha_pattern), and
// which base tensors train in full (bias, modules_to_save). One selection
// serves the run plan (sizes only) and the replica (live layers).
import { patternValue, type LoraSettings, type PeftBias } from '@lorafleet/core';
import { ALL_LINEAR, selectTargets } from './lora.js';

/** LoraConfig's fields as a run gives them (RunConfig.lora, `lorafleet train`). */
export interface PeftLoraOptions extends LoraSettings {
  /** Module names, or one regular expression matched against whole module paths. */
  targets: readonly string[] | string;
  layersToTransform?: readonly number[];
  layersPattern?: readonly string[];
  rankPattern?: Readonly<Record<string, number>>;
  alphaPattern?: Readonly<Record<string, number>>;
  modulesToSave?: readonly string[];
  bias?: PeftBias;
}

const isAllLinear = (t: PeftLoraOptions['targets']) =>
  t === ALL_LINEAR || (typeof t !== 'string' && t.length === 1 && t[0] === ALL_LINEAR);

/** PEFT's check_target_module_exists: a module inside a modules_to_save module is never adapted. */
export function insideModulesToSave(path: string, modulesToSave: readonly string[] = []): boolean {
  return modulesToSave.some((m) => new RegExp(`(^|.*\\.)${m}($|\\..*)`).test(path));
}

/**
 * The layer index PEFT reads from a module path for layers_to_transform: the
 * number after `<pattern>.` (any name when no pattern), or null.
 */
export function layerIndexOf(path: string, patterns: readonly string[] = []): number | null {
  const tries = patterns.length > 0 ? patterns : ['[^.]*'];
  for (const p of tries) {
    const m = new RegExp(`^.*?\\.${p}\\.(\\d+)\\.`).exec(path);
    if (m) return Number(m[1]);
  }
  return null;
}

/**
 * The linear and embedding modules that get LoRA, as PEFT chooses them.
 * "all-linear" never takes an embedding; an explicit name or a regex may.
 */
export function selectPeftModules<L extends { name: string }, E extends { name: string }>(
  linears: readonly L[],
  embeddings: readonly E[],
  o: PeftLoraOptions,
): { linears: L[]; embeddings: E[] } {
  const candidates: (L | E)[] = isAllLinear(o.targets) ? [...linears] : [...linears, ...embeddings];
  let chosen = selectTargets(candidates, o.targets);
  if (o.layersToTransform && o.layersToTransform.length > 0) {
    const keep = new Set(o.layersToTransform);
    chosen = chosen.filter((m) => {
      const index = layerIndexOf(m.name, o.layersPattern);
      return index !== null && keep.has(index);
    });
    if (chosen.length === 0) {
      throw new Error(
        `layers_to_transform [${o.layersToTransform.join(', ')}]${o.layersPattern ? ` (layers_pattern ${o.layersPattern.join(', ')})` : ''} ` +
          `keeps none of the targeted modules (e.g. ${candidates[0]?.name ?? 'none'}): check the layer numbers`,
      );
    }
  }
  const adapted = chosen.filter((m) => !insideModulesToSave(m.name, o.modulesToSave));
  if (adapted.length === 0) {
    throw new Error(
      `every targeted module is inside modules_to_save (${o.modulesToSave?.join(', ')}), which PEFT trains in full instead`,
    );
  }
  const set = new Set<{ name: string }>(adapted);
  return {
    linears: linears.filter((l) => set.has(l)),
    embeddings: embeddings.filter((e) => set.has(e)),
  };
}

/** One module's LoRA settings: r and alpha from rank_pattern / alpha_pattern when a key matches. */
export function moduleSettings(o: PeftLoraOptions, path: string): LoraSettings {
  return {
    r: patternValue(o.rankPattern as Record<string, number> | undefined, path) ?? o.r,
    alpha: patternValue(o.alphaPattern as Record<string, number> | undefined, path) ?? o.alpha,
    dropout: o.dropout,
    rslora: o.rslora,
    ...(o.useDora ? { useDora: true } : {}),
  };
}

/**
 * The base tensors trained in full, by Hugging Face name, each with its key in
 * the adapter file (without "base_model.model."): modules_to_save tensors and
 * the biases that `bias` selects. The bias of an adapted module sits on PEFT's
 * base_layer ("<m>.base_layer.bias"). Sorted by key.
 */
export function fullyTrainedTensors(
  tensorNames: readonly string[],
  adapted: ReadonlySet<string>,
  o: PeftLoraOptions,
  tiedEmbeddings: readonly string[] = [],
): { name: string; key: string }[] {
  const out = new Map<string, string>();
  const moduleOf = (name: string) => name.slice(0, name.lastIndexOf('.'));
  const keyOf = (name: string) => {
    const m = moduleOf(name);
    return adapted.has(m) ? `${m}.base_layer.${name.slice(m.length + 1)}` : name;
  };
  for (const wanted of o.modulesToSave ?? []) {
    const hits = tensorNames.filter((n) => enclosingModules(n).some((m) => m.endsWith(wanted)));
    if (hits.length === 0) {
      const modules = [...new Set(tensorNames.map(moduleOf))].slice(0, 6).join(', ');
      throw new Error(
        `modules_to_save "${wanted}" matches no module of the model (modules such as ${modules}, ...)`,
      );
    }
    const tied = hits.find((n) => tiedEmbeddings.includes(moduleOf(n)));
    if (tied) {
      throw new Error(
        `modules_to_save "${wanted}" takes ${tied}, which the output head shares (tie_word_embeddings): ` +
          'PEFT would train a copy that the head does not read; adapt it with LoRA instead (--target)',
      );
    }
    for (const n of hits) out.set(n, n);
  }
  const bias = o.bias ?? 'none';
  for (const n of tensorNames) {
    if (!n.endsWith('.bias') || out.has(n)) continue;
    if (bias === 'all' || (bias === 'lora_only' && adapted.has(moduleOf(n)))) out.set(n, keyOf(n));
  }
  return [...out]
    .map(([name, key]) => ({ name, key }))
    .sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
}

/** "a.b.c.weight" -> ["a", "a.b", "a.b.c"]: every module that holds the tensor. */
function enclosingModules(tensorName: string): string[] {
  const parts = tensorName.split('.');
  return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('.'));
}

/**
 * target_modules as the adapter file records it: a regex stays a string;
 * names stay a list, "all-linear" becoming the names of the layers it
 * selected (as PEFT expands it). Where the family confines targets to a
 * module path (`scope`, ModelFamily.targetScope), the list holds every
 * chosen module's path instead: PEFT then adapts exactly those, and none of
 * the same names outside it (Gemma 3's vision tower).
 */
export function savedTargets(
  targets: PeftLoraOptions['targets'],
  chosen: readonly { name: string }[],
  scope?: string,
): string[] | string {
  if (typeof targets === 'string' && targets !== ALL_LINEAR) return targets;
  if (scope) return chosen.map((m) => m.name);
  if (isAllLinear(targets))
    return [...new Set(chosen.map((l) => l.name.split('.').at(-1)!))].sort();
  return [...new Set(targets as readonly string[])];
}
