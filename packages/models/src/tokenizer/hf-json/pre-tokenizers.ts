// tokenizer.json's "pre_tokenizer": cuts normalized text into pieces that the
// model never merges across. Semantics follow Hugging Face tokenizers (Rust).
import { GPT2_SPLIT_PATTERN, bytesToSymbol } from '../byte-level.js';
import { utf8Bytes } from '../utf8.js';
import {
  type JsonObject,
  type JsonPlace,
  asArray,
  asObject,
  asString,
  at,
  componentType,
  fail,
  optionalBoolean,
  patternRegExp,
} from './json.js';
import { onigToJs } from './onig-regex.js';

/** A piece of text; `atStart` when it begins at offset 0 of the input (Metaspace's "first"). */
export interface Piece {
  text: string;
  atStart: boolean;
}

export type PreTokenizer = (pieces: Piece[]) => Piece[];

type SplitBehavior =
  'Isolated' | 'Removed' | 'MergedWithPrevious' | 'MergedWithNext' | 'Contiguous';

interface Segment {
  text: string;
  match: boolean;
}

/** Each behaviour as in tokenizers' `SplitDelimiterBehavior`, over [text, isMatch] segments. */
const BEHAVIORS: Readonly<Record<SplitBehavior, (segments: Segment[]) => string[]>> = {
  Isolated: (segments) => segments.map((s) => s.text),
  Removed: (segments) => segments.filter((s) => !s.match).map((s) => s.text),
  MergedWithPrevious: (segments) => {
    const out: string[] = [];
    let previousMatch = false;
    for (const s of segments) {
      if (s.match && !previousMatch && out.length > 0) out[out.length - 1] += s.text;
      else out.push(s.text);
      previousMatch = s.match;
    }
    return out;
  },
  MergedWithNext: (segments) => {
    const out: string[] = [];
    let previousMatch = false;
    for (let i = segments.length - 1; i >= 0; i--) {
      const s = segments[i] as Segment;
      if (s.match && !previousMatch && out.length > 0)
        out[out.length - 1] = s.text + out[out.length - 1];
      else out.push(s.text);
      previousMatch = s.match;
    }
    return out.reverse();
  },
  Contiguous: (segments) => {
    const out: string[] = [];
    let previousMatch = false;
    segments.forEach((s, i) => {
      if (i > 0 && s.match === previousMatch) out[out.length - 1] += s.text;
      else out.push(s.text);
      previousMatch = s.match;
    });
    return out;
  },
};

/** Matches and the text between them, in order; empty matches are ignored. */
export function segmentsOf(text: string, regex: RegExp, invert = false): Segment[] {
  const segments: Segment[] = [];
  let last = 0;
  for (const m of text.matchAll(regex)) {
    if (m[0] === '') continue;
    if (m.index > last) segments.push({ text: text.slice(last, m.index), match: invert });
    segments.push({ text: m[0], match: !invert });
    last = m.index + m[0].length;
  }
  if (last < text.length) segments.push({ text: text.slice(last), match: invert });
  return segments;
}

/** Splits every piece; only the first part of a piece keeps its `atStart`. */
function splitEach(pieces: Piece[], split: (text: string, atStart: boolean) => string[]): Piece[] {
  const out: Piece[] = [];
  for (const piece of pieces) {
    split(piece.text, piece.atStart).forEach((text, i) => {
      if (text !== '') out.push({ text, atStart: piece.atStart && i === 0 });
    });
  }
  return out;
}

type PreTokenizerType = 'Sequence' | 'Split' | 'ByteLevel' | 'Metaspace' | 'Digits';

const BUILDERS: Readonly<
  Record<PreTokenizerType, (o: JsonObject, place: JsonPlace) => PreTokenizer>
> = {
  Sequence: (o, place) => {
    const steps = asArray(o['pretokenizers'], at(place, 'pretokenizers')).map((p, i) =>
      buildPreTokenizer(p, at(at(place, 'pretokenizers'), i)),
    );
    return (pieces) => steps.reduce((acc, step) => step(acc), pieces);
  },
  Split: (o, place) => {
    const regex = patternRegExp(o['pattern'], at(place, 'pattern'), onigToJs);
    const behavior = asString(o['behavior'], at(place, 'behavior'));
    if (!(behavior in BEHAVIORS)) {
      fail(at(place, 'behavior'), `unknown split behavior ${JSON.stringify(behavior)}`);
    }
    const apply = BEHAVIORS[behavior as SplitBehavior];
    const invert = optionalBoolean(o['invert'], at(place, 'invert'), false);
    return (pieces) => splitEach(pieces, (text) => apply(segmentsOf(text, regex, invert)));
  },
  ByteLevel: (o, place) => {
    const addPrefixSpace = optionalBoolean(
      o['add_prefix_space'],
      at(place, 'add_prefix_space'),
      true,
    );
    const useRegex = optionalBoolean(o['use_regex'], at(place, 'use_regex'), true);
    return (pieces) =>
      splitEach(pieces, (text) => {
        const spaced = addPrefixSpace && !text.startsWith(' ') ? ' ' + text : text;
        const parts = useRegex
          ? Array.from(spaced.matchAll(GPT2_SPLIT_PATTERN), (m) => m[0])
          : [spaced];
        return parts.map((part) => bytesToSymbol(utf8Bytes(part)));
      });
  },
  Metaspace: (o, place) => {
    const replacement = asString(o['replacement'] ?? '\u2581', at(place, 'replacement'));
    const scheme = metaspaceScheme(o, place);
    const split = optionalBoolean(o['split'], at(place, 'split'), true);
    return (pieces) =>
      splitEach(pieces, (text, atStart) => {
        let replaced = text.replaceAll(' ', replacement);
        const prepend = scheme === 'always' || (scheme === 'first' && atStart);
        if (prepend && !replaced.startsWith(replacement)) replaced = replacement + replaced;
        if (!split) return [replaced];
        const parts: string[] = [];
        for (const part of replaced.split(replacement)) {
          if (parts.length === 0) parts.push(part);
          else parts.push(replacement + part);
        }
        return parts;
      });
  },
  Digits: (o, place) => {
    const individual = optionalBoolean(
      o['individual_digits'],
      at(place, 'individual_digits'),
      false,
    );
    const regex = individual ? /[0-9]/gu : /[0-9]+/gu;
    return (pieces) => splitEach(pieces, (text) => BEHAVIORS.Isolated(segmentsOf(text, regex)));
  },
};

export type MetaspaceScheme = 'always' | 'first' | 'never';

/** `prepend_scheme`, or the older `add_prefix_space` boolean (true meant "always"). */
export function metaspaceScheme(o: JsonObject, place: JsonPlace): MetaspaceScheme {
  const scheme = o['prepend_scheme'];
  if (scheme === undefined || scheme === null) {
    return optionalBoolean(o['add_prefix_space'], at(place, 'add_prefix_space'), true)
      ? 'always'
      : 'never';
  }
  if (scheme !== 'always' && scheme !== 'first' && scheme !== 'never') {
    fail(
      at(place, 'prepend_scheme'),
      `expected "always", "first" or "never", found ${JSON.stringify(scheme)}`,
    );
  }
  return scheme;
}

/** The pre-tokenizer a tokenizer.json describes; null means the whole text is one piece. */
export function buildPreTokenizer(value: unknown, place: JsonPlace): PreTokenizer {
  if (value === null || value === undefined) return (pieces) => pieces;
  const o = asObject(value, place);
  return BUILDERS[componentType(o, place, BUILDERS, 'pre-tokenizer')](o, place);
}
