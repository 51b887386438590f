// When a flag or a --config key names no option: the option the user most
// likely meant. Another tool's name for the same setting comes first (each
// option lists them in `aliases`: transformers' learning_rate, PEFT's
// target_modules, torchrun's nproc_per_node); then a near spelling (--epoch,
// --lora_r) or the start of a name (--checkpoint).
import type { CommandSpec } from './spec.js';

/** '--Lora_R' -> 'lora-r': how names are compared (case, dashes and underscores aside). */
function canonical(name: string): string {
  return name.replace(/^-+/, '').toLowerCase().replaceAll('_', '-');
}

/** Edits (insert, delete, substitute, swap two neighbours) that turn a into b. */
export function editDistance(a: string, b: string): number {
  // d[i][j]: the distance between a's first i characters and b's first j.
  const d = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, d[i - 2]![j - 2]! + 1);
      }
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/** How many edits still read as a misspelling of a name this long. */
const tolerance = (length: number) => (length <= 4 ? 1 : length <= 8 ? 2 : 3);

/**
 * A clause for an error message naming the option `given` (a flag with its
 * dashes, or a --config key) probably meant, e.g. "did you mean --lr (the
 * name here for learning_rate)?", or '' when no option is close. `quote`
 * writes an option's name as the user would: a flag or a JSON key.
 */
export function suggestOption(
  spec: Pick<CommandSpec, 'options'>,
  given: string,
  quote: (name: string) => string,
): string {
  const wanted = canonical(given);
  if (wanted in spec.options) return `did you mean ${quote(wanted)}?`;
  for (const [name, option] of Object.entries(spec.options)) {
    const alias = option.aliases?.find((a) => canonical(a) === wanted);
    if (alias !== undefined) return `did you mean ${quote(name)} (the name here for ${alias})?`;
  }
  const names = [...Object.keys(spec.options), 'help'];
  const scored = names
    .map((name) => ({ name, distance: editDistance(wanted, name) }))
    .filter(({ name, distance }) => {
      const isStart = wanted.length >= 3 && name.startsWith(wanted);
      return isStart || (distance <= tolerance(wanted.length) && distance < name.length);
    })
    .sort((a, b) => a.distance - b.distance || a.name.localeCompare(b.name))
    .slice(0, 3)
    .map(({ name }) => quote(name));
  if (scored.length === 0) return '';
  const last = scored.pop()!;
  return `did you mean ${scored.length > 0 ? `${scored.join(', ')} or ${last}` : last}?`;
}
