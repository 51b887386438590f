// JSON Lines datasets. Each non-blank line is one object of one of three shapes:
//   {"text": "..."}                          loss on every token, EOS appended
//   {"prompt": "...", "completion": "..."}   loss on completion + EOS only
//   {"input_ids": [...], "labels": [...]}    pre-tokenized, taken verbatim;
//                                            labels optional, -100 = no loss
// Other keys (ids, metadata) are ignored. Blank lines are skipped silently.

import { readFile } from 'node:fs/promises';
import { ProblemLog, type BadLinePolicy, type ReadResult } from './problems.js';
import {
  exampleFromIds,
  tokenizePromptCompletion,
  tokenizeText,
  type TextTokenizer,
  type TokenizedExample,
} from './tokenizer.js';

/** Reads a JSONL file into examples, skipping bad lines under `policy`. */
export async function readJsonl(
  file: string,
  tokenizer: TextTokenizer,
  policy: BadLinePolicy = {},
): Promise<ReadResult> {
  const text = await readFile(file, 'utf8');
  const lines = (text.charCodeAt(0) === 0xfeff ? text.slice(1) : text).split('\n');
  const log = new ProblemLog(file, policy);
  const examples: TokenizedExample[] = [];
  lines.forEach((raw, index) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') return;
    log.record();
    const example = parseJsonlLine(line, tokenizer);
    if (typeof example === 'string') log.reject(index + 1, example);
    else examples.push(example);
  });
  return { ...log.finish(examples.length), examples };
}

/** One line to an example, or a message saying what is wrong with it. */
export function parseJsonlLine(line: string, tokenizer: TextTokenizer): TokenizedExample | string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    return `invalid JSON (${(e as Error).message})`;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return `expected a JSON object, found ${Array.isArray(value) ? 'an array' : typeof value}`;
  }
  const o = value as Record<string, unknown>;
  const shapes = (['text', 'prompt', 'input_ids'] as const).filter((k) => k in o);
  if (shapes.length !== 1) {
    return shapes.length === 0
      ? 'expected a "text", "prompt"/"completion" or "input_ids" key, found ' +
          (Object.keys(o)
            .map((k) => JSON.stringify(k))
            .join(', ') || 'none')
      : `ambiguous: has ${shapes.map((k) => `"${k}"`).join(' and ')}; keep one`;
  }
  switch (shapes[0]) {
    case 'text':
      if (typeof o.text !== 'string') return `"text" must be a string, found ${typeName(o.text)}`;
      if (o.text === '') return '"text" is empty';
      return tokenizeText(tokenizer, o.text);
    case 'prompt':
      if (typeof o.prompt !== 'string') {
        return `"prompt" must be a string, found ${typeName(o.prompt)}`;
      }
      if (typeof o.completion !== 'string') {
        return `"completion" must be a string, found ${typeName(o.completion)}`;
      }
      if (o.completion === '') return '"completion" is empty';
      return tokenizePromptCompletion(tokenizer, o.prompt, o.completion);
    default: {
      if (!Array.isArray(o.input_ids)) {
        return `"input_ids" must be an array, found ${typeName(o.input_ids)}`;
      }
      if (o.labels !== undefined && !Array.isArray(o.labels)) {
        return `"labels" must be an array, found ${typeName(o.labels)}`;
      }
      try {
        return exampleFromIds(o.input_ids, o.labels as unknown[] | undefined, tokenizer.vocabSize);
      } catch (e) {
        if (e instanceof RangeError) return e.message;
        throw e;
      }
    }
  }
}

function typeName(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  return Array.isArray(v) ? 'an array' : `a ${typeof v}`;
}
