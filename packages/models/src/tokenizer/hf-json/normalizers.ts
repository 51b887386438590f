// tokenizer.json's "normalizer": rewrites each piece of text between added
// tokens before pre-tokenization (Llama 2: prepend "▁" and spaces -> "▁";
// Qwen: NFC). Semantics follow Hugging Face tokenizers (Rust).
import {
  type JsonObject,
  type JsonPlace,
  asArray,
  asObject,
  asString,
  at,
  componentType,
  optionalBoolean,
  patternRegExp,
} from './json.js';
import { onigToJs } from './onig-regex.js';

export type Normalizer = (text: string) => string;

type NormalizerType =
  'Sequence' | 'NFC' | 'NFD' | 'NFKC' | 'NFKD' | 'Prepend' | 'Replace' | 'Lowercase' | 'Strip';

const BUILDERS: Readonly<Record<NormalizerType, (o: JsonObject, place: JsonPlace) => Normalizer>> =
  {
    Sequence: (o, place) => {
      const steps = asArray(o['normalizers'], at(place, 'normalizers')).map((n, i) =>
        buildNormalizer(n, at(at(place, 'normalizers'), i)),
      );
      return (text) => steps.reduce((acc, step) => step(acc), text);
    },
    NFC: () => (text) => text.normalize('NFC'),
    NFD: () => (text) => text.normalize('NFD'),
    NFKC: () => (text) => text.normalize('NFKC'),
    NFKD: () => (text) => text.normalize('NFKD'),
    // Rust's Prepend leaves an empty string empty.
    Prepend: (o, place) => {
      const prefix = asString(o['prepend'], at(place, 'prepend'));
      return (text) => (text === '' ? text : prefix + text);
    },
    Replace: (o, place) => {
      const regex = patternRegExp(o['pattern'], at(place, 'pattern'), onigToJs);
      const content = asString(o['content'], at(place, 'content'));
      return (text) => text.replace(regex, () => content);
    },
    Lowercase: () => (text) => text.toLowerCase(),
    Strip: (o, place) => {
      const left = optionalBoolean(o['strip_left'], at(place, 'strip_left'), true);
      const right = optionalBoolean(o['strip_right'], at(place, 'strip_right'), true);
      return (text) => {
        let out = left ? text.replace(/^\p{White_Space}+/u, '') : text;
        out = right ? out.replace(/\p{White_Space}+$/u, '') : out;
        return out;
      };
    },
  };

/** The normalizer a tokenizer.json describes; null means none. */
export function buildNormalizer(value: unknown, place: JsonPlace): Normalizer {
  if (value === null || value === undefined) return (text) => text;
  const o = asObject(value, place);
  return BUILDERS[componentType(o, place, BUILDERS, 'normalizer')](o, place);
}
