// Attaching LoRA adapters to a model by PEFT's target-module rules: a list
// of names matches a module when its path equals a name or ends with
// "." + name; a single string is a regular expression the whole path must
// match; "all-linear" is every linear layer but the output head (which no
// family lists among its linears).
import type { BaseDtype, LoraInit, LoraLinear, LoraSettings } from '@lorafleet/core';

/** PEFT's shorthand for every linear layer except the output head. */
export const ALL_LINEAR = 'all-linear';

export function matchesTarget(modulePath: string, target: string): boolean {
  return modulePath === target || modulePath.endsWith(`.${target}`);
}

/**
 * The layers that `targets` selects: a list of module names (or just
 * "all-linear"), or a regular expression matched against whole module paths,
 * as PEFT's target_modules. A target that selects nothing is an error.
 */
export function selectTargets<T extends { name: string }>(
  layers: readonly T[],
  targets: readonly string[] | string,
): T[] {
  if (typeof targets === 'string') return selectByRegex(layers, targets);
  if (targets.length === 0) throw new Error('no LoRA target modules given (e.g. --target c_attn)');
  if (targets.includes(ALL_LINEAR)) {
    if (targets.length > 1)
      throw new Error(`LoRA target "${ALL_LINEAR}" selects every linear layer: give it alone`);
    return [...layers];
  }
  const chosen = new Set<T>();
  for (const target of targets) {
    const hits = layers.filter((l) => matchesTarget(l.name, target));
    if (hits.length === 0) {
      throw new Error(
        `LoRA target "${target}" matches no module; the model's linear layers end in: ${suffixes(layers).join(', ')}`,
      );
    }
    hits.forEach((l) => chosen.add(l));
  }
  return layers.filter((l) => chosen.has(l));
}

function selectByRegex<T extends { name: string }>(layers: readonly T[], pattern: string): T[] {
  if (pattern === ALL_LINEAR) return [...layers];
  let regex: RegExp;
  try {
    regex = new RegExp(`^(?:${pattern})$`);
  } catch (err) {
    throw new Error(
      `LoRA target_modules "${pattern}" is not a valid regular expression (${(err as Error).message})`,
    );
  }
  const hits = layers.filter((l) => regex.test(l.name));
  if (hits.length === 0) {
    throw new Error(
      `LoRA target_modules "${pattern}" matches no whole module path (e.g. ${layers[0]?.name ?? 'none'})`,
    );
  }
  return hits;
}

/** The last two parts of every layer's path, once each ("attn.c_attn", "self_attn.q_proj"). */
function suffixes(layers: readonly { name: string }[]): string[] {
  return [...new Set(layers.map((l) => l.name.split('.').slice(-2).join('.')))];
}

/**
 * Stores the frozen W of every linear layer as `dtype` (--base-dtype: bf16
 * or f16 halves, nf4's 4 bits; f32 changes nothing). Embeddings, norms and biases stay f32, as
 * do LoRA factors. Merge, PiSSA, full fine-tuning and readWeights() then
 * refuse, naming the option.
 */
export async function storeBasesAs(
  model: { linears(): readonly LoraLinear[] },
  dtype: BaseDtype,
): Promise<void> {
  for (const layer of model.linears()) {
    // A module trained in full (modules_to_save) keeps its f32 weight variable.
    if (dtype !== 'f32' && layer.baseDtype === 'f32' && layer.weight.trainable) {
      throw new Error(
        `${layer.name}: its weight is trained in full (--modules-to-save), so it must stay f32: ` +
          'use --base-dtype f32 or leave it out of --modules-to-save',
      );
    }
    await layer.storeBaseAs(dtype);
  }
}

/**
 * Adds adapter `name` to every targeted layer and makes it active there.
 * Asynchronous because PiSSA reads each base weight, which GPU backends allow
 * only with `await data()`.
 */
export async function addLora(
  layers: readonly LoraLinear[],
  name: string,
  settings: LoraSettings,
  init: LoraInit,
  targets: readonly string[] | string,
  seed: number,
): Promise<LoraLinear[]> {
  const chosen = selectTargets(layers, targets);
  for (const layer of chosen) await layer.addAdapterAsync(name, settings, init, seed);
  return chosen;
}
