const encoder = new TextEncoder();
// fatal: false is the point: malformed bytes become U+FFFD instead of throwing.
const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
const REPLACEMENT = encoder.encode('\uFFFD');

export function utf8Bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

/**
 * Decodes token ids given each id's bytes. `bytesOf` returns the bytes of an
 * id, 'eos' for the end-of-text id, or undefined for an unknown id.
 *
 * EOS is a hard boundary: bytes before and after it are decoded separately,
 * so a character cut by EOS shows as U+FFFD rather than being silently glued
 * to the next document.
 */
export function decodeTokenBytes(
  ids: ArrayLike<number>,
  bytesOf: (id: number) => Uint8Array | 'eos' | undefined,
): string {
  let text = '';
  let pending: Uint8Array[] = [];
  let pendingLength = 0;
  const flush = (): void => {
    if (pendingLength === 0) return;
    const joined = new Uint8Array(pendingLength);
    let offset = 0;
    for (const chunk of pending) {
      joined.set(chunk, offset);
      offset += chunk.length;
    }
    text += decoder.decode(joined);
    pending = [];
    pendingLength = 0;
  };
  for (let i = 0; i < ids.length; i++) {
    const bytes = bytesOf(ids[i] as number);
    if (bytes === 'eos') {
      flush();
      continue;
    }
    const chunk = bytes ?? REPLACEMENT;
    pending.push(chunk);
    pendingLength += chunk.length;
  }
  flush();
  return text;
}
