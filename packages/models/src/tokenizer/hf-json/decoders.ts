// tokenizer.json's "decoder": token strings back to text, for generation.
// Each step maps a list of token strings to a list, as Rust's `decode_chain`;
// the caller joins the result.
import { UNICODE_TO_BYTE } from '../byte-level.js';
import { utf8Bytes } from '../utf8.js';
import {
  type JsonObject,
  type JsonPlace,
  asArray,
  asObject,
  asString,
  at,
  componentType,
  patternRegExp,
} from './json.js';
import { onigToJs } from './onig-regex.js';
import { metaspaceScheme } from './pre-tokenizers.js';

export type Decoder = (tokens: string[]) => string[];

// fatal: false: invalid UTF-8 (a generation cut mid-character) becomes U+FFFD.
const lossy = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const BYTE_TOKEN = /^<0x([0-9A-F]{2})>$/;

type DecoderType =
  'Sequence' | 'ByteLevel' | 'Metaspace' | 'Replace' | 'ByteFallback' | 'Fuse' | 'Strip';

const BUILDERS: Readonly<Record<DecoderType, (o: JsonObject, place: JsonPlace) => Decoder>> = {
  Sequence: (o, place) => {
    const steps = asArray(o['decoders'], at(place, 'decoders')).map((d, i) =>
      buildDecoder(d, at(at(place, 'decoders'), i)),
    );
    return (tokens) => steps.reduce((acc, step) => step(acc), tokens);
  },
  // Characters outside the byte alphabet (added tokens) keep their own UTF-8 bytes.
  ByteLevel: () => (tokens) => {
    const bytes: number[] = [];
    for (const token of tokens) {
      const mapped = Array.from(token, (ch) => UNICODE_TO_BYTE.get(ch));
      if (mapped.every((b) => b !== undefined)) bytes.push(...(mapped as number[]));
      else bytes.push(...utf8Bytes(token));
    }
    return [lossy.decode(Uint8Array.from(bytes))];
  },
  Metaspace: (o, place) => {
    const replacement = asString(o['replacement'] ?? '\u2581', at(place, 'replacement'));
    const scheme = metaspaceScheme(o, place);
    return (tokens) =>
      tokens.map((token, i) => {
        const text = token.replaceAll(replacement, ' ');
        return i === 0 && scheme !== 'never' && text.startsWith(' ') ? text.slice(1) : text;
      });
  },
  Replace: (o, place) => {
    const regex = patternRegExp(o['pattern'], at(place, 'pattern'), onigToJs);
    const content = asString(o['content'], at(place, 'content'));
    return (tokens) => tokens.map((token) => token.replace(regex, () => content));
  },
  // Runs of "<0xNN>" tokens become their UTF-8 text, or one U+FFFD per byte when invalid.
  ByteFallback: () => (tokens) => {
    const out: string[] = [];
    let bytes: number[] = [];
    const flush = (): void => {
      if (bytes.length === 0) return;
      try {
        out.push(strict.decode(Uint8Array.from(bytes)));
      } catch {
        out.push(...bytes.map(() => '\uFFFD'));
      }
      bytes = [];
    };
    for (const token of tokens) {
      const m = BYTE_TOKEN.exec(token);
      if (m) bytes.push(parseInt(m[1] as string, 16));
      else {
        flush();
        out.push(token);
      }
    }
    flush();
    return out;
  },
  Fuse: () => (tokens) => [tokens.join('')],
  Strip: (o, place) => {
    const content = asString(o['content'], at(place, 'content'));
    const start = Number(o['start'] ?? 0);
    const stop = Number(o['stop'] ?? 0);
    return (tokens) =>
      tokens.map((token) => {
        const chars = Array.from(token);
        let from = 0;
        while (from < start && chars[from] === content) from++;
        let to = chars.length;
        while (chars.length - to < stop && to > from && chars[to - 1] === content) to--;
        return chars.slice(from, to).join('');
      });
  },
};

/** The decoder a tokenizer.json describes; null joins token strings as they are. */
export function buildDecoder(value: unknown, place: JsonPlace): Decoder {
  if (value === null || value === undefined) return (tokens) => tokens;
  const o = asObject(value, place);
  return BUILDERS[componentType(o, place, BUILDERS, 'decoder')](o, place);
}
