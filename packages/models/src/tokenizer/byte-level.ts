/**
 * GPT-2's byte-level alphabet: every byte maps to a printable character so
 * that vocab.json and merges.txt can be plain text. Printable Latin-1 bytes
 * map to themselves; the other 68 (controls, space, 0x7F..0xA0, 0xAD) are
 * shifted to U+0100.. in byte order, which is why a space shows as "Ġ".
 */
function buildByteToUnicode(): string[] {
  const printable = (b: number): boolean =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const table: string[] = [];
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    table.push(String.fromCharCode(printable(b) ? b : 256 + shifted++));
  }
  return table;
}

export const BYTE_TO_UNICODE: readonly string[] = buildByteToUnicode();

export const UNICODE_TO_BYTE: ReadonlyMap<string, number> = new Map(
  BYTE_TO_UNICODE.map((ch, b) => [ch, b]),
);

/**
 * GPT-2's pre-tokenizer: BPE never merges across these pieces. Contractions
 * are lowercase only, as in OpenAI's encoder.py, so "DON'T" is not split like
 * "don't"; `\s+(?!\S)` leaves the last space of a run to prefix the next word.
 *
 * `\s` is spelled \p{White_Space} because that is exactly what `\s` matches
 * in the Python `regex` module OpenAI's encoder.py uses (checked over every
 * code point); JavaScript's own `\s` adds U+FEFF and lacks U+0085.
 */
export const GPT2_SPLIT_PATTERN =
  /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;

/** The vocab.json spelling of a byte string, e.g. " hi" -> "Ġhi". */
export function bytesToSymbol(bytes: Uint8Array): string {
  let symbol = '';
  for (const b of bytes) symbol += BYTE_TO_UNICODE[b];
  return symbol;
}

/** Inverse of bytesToSymbol; undefined when a character is outside the byte alphabet. */
export function symbolToBytes(symbol: string): Uint8Array | undefined {
  const bytes: number[] = [];
  for (const ch of symbol) {
    const b = UNICODE_TO_BYTE.get(ch);
    if (b === undefined) return undefined;
    bytes.push(b);
  }
  return Uint8Array.from(bytes);
}
