// Slurm's compressed host lists (SLURM_STEP_NODELIST, SLURM_JOB_NODELIST):
// `gpu[01-04,07],login1` names gpu01 gpu02 gpu03 gpu04 gpu07 login1, in that
// order. Read here without `scontrol show hostnames`, which is not on every
// compute node's PATH (and a container may have no Slurm at all).

/** The hosts of a compressed list, in order; throws with the position of what is malformed. */
export function expandHostlist(list: string): string[] {
  const hosts: string[] = [];
  for (const item of splitTopLevel(list)) {
    if (item === '')
      throw new HostlistError(list, 'an empty host name (two commas, or a comma at an end)');
    hosts.push(...expandItem(list, item));
  }
  return hosts;
}

export class HostlistError extends Error {
  override name = 'HostlistError';
  constructor(list: string, what: string) {
    super(`host list "${list}": ${what}; expected e.g. gpu[01-04,07],login1`);
  }
}

/** Splits on the commas outside brackets. */
function splitTopLevel(list: string): string[] {
  const items: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < list.length; i++) {
    const c = list[i];
    if (c === '[') depth++;
    else if (c === ']') depth--;
    if (depth < 0 || depth > 1)
      throw new HostlistError(list, `unbalanced brackets at position ${i}`);
    if (c === ',' && depth === 0) {
      items.push(list.slice(start, i).trim());
      start = i + 1;
    }
  }
  if (depth !== 0) throw new HostlistError(list, 'a "[" without its "]"');
  items.push(list.slice(start).trim());
  return items;
}

/** One item: literal text and bracket groups; several groups multiply (`r[1-2]n[1-2]`: 4 hosts). */
function expandItem(list: string, item: string): string[] {
  let names = [''];
  const pattern = /([^[\]]*)(?:\[([^\]]*)\])?/g;
  for (const match of item.matchAll(pattern)) {
    if (match[0] === '') break;
    const [, text = '', group] = match;
    const suffixes = group === undefined ? [''] : expandGroup(list, group);
    names = names.flatMap((prefix) => suffixes.map((s) => `${prefix}${text}${s}`));
  }
  return names;
}

/** `01-04,07` -> 01 02 03 04 07: a range keeps the zero padding of its lower bound. */
function expandGroup(list: string, group: string): string[] {
  if (group.trim() === '') throw new HostlistError(list, 'an empty "[]"');
  return group.split(',').flatMap((part) => {
    const range = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!range) throw new HostlistError(list, `"${part}" in [${group}] is not N or N-M`);
    const [, low = '', high] = range;
    if (high === undefined) return [low];
    const from = Number(low);
    const to = Number(high);
    if (to < from) throw new HostlistError(list, `the range ${part} runs backwards`);
    if (to - from >= 100_000) throw new HostlistError(list, `the range ${part} is too large`);
    const width = low.length;
    return Array.from({ length: to - from + 1 }, (_, k) => String(from + k).padStart(width, '0'));
  });
}
