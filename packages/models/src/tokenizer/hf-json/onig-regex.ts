/**
 * Hugging Face tokenizers compile Split/Replace regexes with Oniguruma. The
 * patterns real tokenizers ship (GPT-2, Llama 3, Qwen2/3) use two constructs
 * whose JavaScript meaning differs:
 *
 * - `\s` / `\S`: Oniguruma's is Unicode White_Space; JavaScript's adds U+FEFF
 *   and lacks U+0085, so both are spelled \p{White_Space} here (inside and
 *   outside character classes);
 * - `(?i:...)`: inline case-insensitive groups, which Node 20's RegExp lacks;
 *   ASCII letters inside become `[xX]` classes (the contractions group
 *   `(?i:'s|'t|...)` is the use in practice).
 *
 * Everything else is passed to RegExp with the `u` flag; a pattern it rejects
 * is reported with the file and field by the caller.
 */
export function onigToJs(pattern: string): string {
  let out = '';
  let inClass = 0;
  const caseless: number[] = []; // the depth of each open (?i: group
  let depth = 0;
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i] as string;
    if (ch === '\\') {
      const next = pattern[i + 1] ?? '';
      if (next === 's') out += '\\p{White_Space}';
      else if (next === 'S') out += '\\P{White_Space}';
      else out += ch + next;
      i++;
      continue;
    }
    if (inClass > 0) {
      if (ch === '[') inClass++;
      if (ch === ']') inClass--;
      out += caseless.length > 0 && /[a-zA-Z]/.test(ch) ? ch.toLowerCase() + ch.toUpperCase() : ch;
      continue;
    }
    if (ch === '[') {
      inClass = 1;
      out += ch;
      continue;
    }
    if (ch === '(') {
      depth++;
      if (pattern.startsWith('(?i:', i)) {
        caseless.push(depth);
        out += '(?:';
        i += 3;
        continue;
      }
    }
    if (ch === ')') {
      if (caseless[caseless.length - 1] === depth) caseless.pop();
      depth--;
    }
    out +=
      caseless.length > 0 && /[a-zA-Z]/.test(ch) ? `[${ch.toLowerCase()}${ch.toUpperCase()}]` : ch;
  }
  return out;
}
