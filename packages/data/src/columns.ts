// Examples from named fields of a JSONL record: the CSV reader's columns
// (--text-column, or --prompt-column and --completion-column with an optional
// --prompt-template) applied to a record's keys, so Alpaca-style rows
// ({"instruction", "input", "output"}) or a text field under another name
// (TRL's dataset_text_field) train without rewriting the file.

import { renderTemplate } from './template.js';
import {
  type TextTokenizer,
  type TokenizedExample,
  tokenizePromptCompletion,
  tokenizeText,
} from './tokenizer.js';

/** Which columns (CSV) or fields (JSONL) make an example. */
export type CsvColumns =
  | { textColumn: string }
  | {
      promptColumn: string;
      completionColumn: string;
      /** E.g. "{mr}\n"; may name any column. Default: the prompt column as is. */
      promptTemplate?: string;
    };

/** A record's string field, or what is wrong with it. */
function field(o: Record<string, unknown>, name: string): string | { problem: string } {
  if (!(name in o)) {
    const present =
      Object.keys(o)
        .map((k) => JSON.stringify(k))
        .join(', ') || 'none';
    return { problem: `no field "${name}" (fields: ${present})` };
  }
  const value = o[name];
  return typeof value === 'string' ? value : { problem: `"${name}" must be a string` };
}

/** The example `columns` make of record `o`, or what is wrong with it. */
export function columnsExample(
  o: Record<string, unknown>,
  tokenizer: TextTokenizer,
  columns: CsvColumns,
  completionOnly: boolean,
): TokenizedExample | string {
  if ('textColumn' in columns) {
    const text = field(o, columns.textColumn);
    if (typeof text !== 'string') return text.problem;
    return text === '' ? `"${columns.textColumn}" is empty` : tokenizeText(tokenizer, text);
  }
  const completion = field(o, columns.completionColumn);
  if (typeof completion !== 'string') return completion.problem;
  if (completion === '') return `"${columns.completionColumn}" is empty`;
  const prompt = promptOf(o, columns);
  if (typeof prompt !== 'string') return prompt.problem;
  return tokenizePromptCompletion(tokenizer, prompt, completion, completionOnly);
}

function promptOf(
  o: Record<string, unknown>,
  columns: Exclude<CsvColumns, { textColumn: string }>,
): string | { problem: string } {
  if (columns.promptTemplate === undefined) return field(o, columns.promptColumn);
  const values: Record<string, string> = {};
  for (const [k, v] of Object.entries(o)) if (typeof v === 'string') values[k] = v;
  try {
    return renderTemplate(columns.promptTemplate, values);
  } catch (e) {
    if (e instanceof RangeError) return { problem: e.message };
    throw e;
  }
}
