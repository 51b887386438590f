// One entry point for every file format: chosen by extension, or forced.

import { extname } from 'node:path';
import { readCsv, type CsvColumns } from './csv-dataset.js';
import { readJsonl } from './jsonl.js';
import { DatasetError, type BadLinePolicy, type ReadResult } from './problems.js';
import { readText } from './text.js';
import type { LossScope, TextTokenizer } from './tokenizer.js';

export type DatasetFormat = 'jsonl' | 'csv' | 'text';

const EXTENSIONS: Readonly<Record<string, DatasetFormat>> = {
  '.jsonl': 'jsonl',
  '.ndjson': 'jsonl',
  '.csv': 'csv',
  '.txt': 'text',
};

export interface DatasetOptions {
  /** Overrides the format that the file's extension implies. */
  format?: DatasetFormat;
  /** Required for CSV: which columns make an example; for JSONL, which fields (instead of the record shapes). */
  csv?: CsvColumns;
  /** For JSONL and CSV (a text file is one document and has no bad lines). */
  badLines?: BadLinePolicy;
  /** Which tokens of prompt/completion and conversation records are trained (default: DEFAULT_LOSS_SCOPE). */
  loss?: LossScope;
}

/** The format of `file`: `override` if given, else from its extension. */
export function datasetFormat(file: string, override?: DatasetFormat): DatasetFormat {
  if (override !== undefined) return override;
  const format = EXTENSIONS[extname(file).toLowerCase()];
  if (format === undefined) {
    throw new DatasetError(
      `${file}: cannot tell the format from the extension "${extname(file)}" ` +
        `(known: ${Object.keys(EXTENSIONS).join(', ')}); pass format: 'jsonl' | 'csv' | 'text'`,
    );
  }
  return format;
}

/** Reads any supported file into tokenized examples (see readJsonl, readCsv, readText). */
export async function readDataset(
  file: string,
  tokenizer: TextTokenizer,
  options: DatasetOptions = {},
): Promise<ReadResult> {
  const format = datasetFormat(file, options.format);
  switch (format) {
    case 'jsonl':
      return readJsonl(file, tokenizer, options.badLines, {
        ...(options.loss ? { loss: options.loss } : {}),
        ...(options.csv ? { columns: options.csv } : {}),
      });
    case 'text':
      return readText(file, tokenizer);
    case 'csv':
      if (options.csv === undefined) {
        throw new DatasetError(
          `${file}: a CSV dataset needs its columns: pass csv: { textColumn } or ` +
            `csv: { promptColumn, completionColumn }`,
        );
      }
      return readCsv(file, tokenizer, {
        ...options.badLines,
        columns: options.csv,
        ...(options.loss ? { loss: options.loss } : {}),
      });
  }
}
