// Attaching LoRA adapters to a model by PEFT's target-module rule: a module
// matches a target when its path equals it or ends with "." + target.
import type { LoraInit, LoraLinear, LoraSettings } from '@lorafleet/core';

export function matchesTarget(modulePath: string, target: string): boolean {
  return modulePath === target || modulePath.endsWith(`.${target}`);
}

/** The layers a list of targets selects; a target that selects nothing is an error. */
export function selectTargets<T extends { name: string }>(
  layers: readonly T[],
  targets: readonly string[],
): T[] {
  if (targets.length === 0) throw new Error('no LoRA target modules given (e.g. --target c_attn)');
  const chosen = new Set<T>();
  for (const target of targets) {
    const hits = layers.filter((l) => matchesTarget(l.name, target));
    if (hits.length === 0) {
      const names = [...new Set(layers.map((l) => l.name.split('.').slice(-2).join('.')))];
      throw new Error(
        `LoRA target "${target}" matches no module; the model's linear layers end in: ${names.join(', ')}`,
      );
    }
    hits.forEach((l) => chosen.add(l));
  }
  return layers.filter((l) => chosen.has(l));
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
  targets: readonly string[],
  seed: number,
): Promise<LoraLinear[]> {
  const chosen = selectTargets(layers, targets);
  for (const layer of chosen) await layer.addAdapterAsync(name, settings, init, seed);
  return chosen;
}
