// tokenizer.json's "added_tokens": strings matched in the raw text before
// normalization, each becoming its id whole ("<|im_start|>", "<think>").
// Matching is leftmost-longest, as the Rust crate's Aho-Corasick search.
import { type JsonPlace, asArray, asObject, asString, at, fail, optionalBoolean } from './json.js';

export interface AddedToken {
  id: number;
  content: string;
  /** Control tokens (BOS, EOS, <|im_end|>): matched only when the caller asks for them. */
  special: boolean;
  lstrip: boolean;
  rstrip: boolean;
}

/** Text between added tokens; `atStart` when it begins at offset 0 of the input. */
export type Segment = { text: string; atStart: boolean } | { id: number };

export function readAddedTokens(value: unknown, place: JsonPlace): AddedToken[] {
  if (value === undefined || value === null) return [];
  return asArray(value, place).map((entry, i) => {
    const p = at(place, i);
    const o = asObject(entry, p);
    const id = o['id'];
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      fail(at(p, 'id'), `expected a non-negative integer, found ${JSON.stringify(id)}`);
    }
    const content = asString(o['content'], at(p, 'content'));
    if (content === '') fail(at(p, 'content'), 'an added token cannot be empty');
    if (optionalBoolean(o['single_word'], at(p, 'single_word'), false)) {
      fail(
        at(p, 'single_word'),
        `added token ${JSON.stringify(content)} has single_word: true, which is not supported`,
      );
    }
    return {
      id,
      content,
      special: optionalBoolean(o['special'], at(p, 'special'), false),
      lstrip: optionalBoolean(o['lstrip'], at(p, 'lstrip'), false),
      rstrip: optionalBoolean(o['rstrip'], at(p, 'rstrip'), false),
    };
  });
}

/** Splits text on a fixed set of added tokens. */
export class AddedTokenSplitter {
  private readonly regex: RegExp | undefined;
  private readonly idOf = new Map<string, number>();

  constructor(tokens: readonly AddedToken[]) {
    // Longest first: JavaScript alternation takes the first alternative that matches.
    const sorted = [...tokens].sort((a, b) => b.content.length - a.content.length);
    const alternatives = sorted.map((t) => {
      this.idOf.set(t.content, t.id);
      const body = `(${escapeRegExp(t.content)})`;
      return `${t.lstrip ? '\\p{White_Space}*' : ''}${body}${t.rstrip ? '\\p{White_Space}*' : ''}`;
    });
    this.regex = alternatives.length > 0 ? new RegExp(alternatives.join('|'), 'gu') : undefined;
  }

  split(text: string): Segment[] {
    if (!this.regex) return text === '' ? [] : [{ text, atStart: true }];
    const out: Segment[] = [];
    let last = 0;
    for (const m of text.matchAll(this.regex)) {
      if (m.index > last) out.push({ text: text.slice(last, m.index), atStart: last === 0 });
      const content = m.slice(1).find((g) => g !== undefined) as string;
      out.push({ id: this.idOf.get(content) as number });
      last = m.index + m[0].length;
    }
    if (last < text.length) out.push({ text: text.slice(last), atStart: last === 0 });
    return out;
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}
