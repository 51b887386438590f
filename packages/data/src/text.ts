// Plain text files: the whole file is one document (trained on every token,
// EOS at the end); packing cuts it into context-sized rows.

import { readFile } from 'node:fs/promises';
import { DatasetError, type ReadResult } from './problems.js';
import { tokenizeText, type TextTokenizer } from './tokenizer.js';

export async function readText(file: string, tokenizer: TextTokenizer): Promise<ReadResult> {
  const raw = await readFile(file, 'utf8');
  const text = raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw;
  if (text.trim() === '')
    throw new DatasetError(`${file}: the file is empty, no document to train on`);
  return {
    file,
    records: 1,
    badRecords: 0,
    problems: [],
    examples: [tokenizeText(tokenizer, text)],
    lines: [1],
    prompted: false,
  };
}
