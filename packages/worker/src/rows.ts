// From a dataset file to rows of the context length: read + tokenize
// (@lorafleet/data), then pack or pad. Every worker of a run calls this on
// the same file with the same options and must get the same rows, which
// rowsFingerprint lets the coordinator check.
import { createHash } from 'node:crypto';
import { access } from 'node:fs/promises';
import {
  type Batch,
  type CsvColumns,
  type DatasetFormat,
  type SequenceRow,
  type TextTokenizer,
  collate,
  formatProblem,
  pack,
  padExamples,
  readDataset,
} from '@lorafleet/data';

export type Packing = 'auto' | 'pack' | 'pad';

export interface RowOptions {
  seqLen: number;
  packing: Packing;
  format?: DatasetFormat;
  csv?: CsvColumns;
}

export interface PreparedRows {
  rows: SequenceRow[];
  /** How the rows were made, for the log. */
  description: string;
  warnings: string[];
}

export async function prepareRows(
  file: string,
  tokenizer: TextTokenizer,
  options: RowOptions,
  option = '--data',
): Promise<PreparedRows> {
  try {
    await access(file);
  } catch {
    throw new Error(
      `${option} ${file}: no such file (give the path of a .jsonl, .csv or .txt dataset)`,
    );
  }
  const read = await readDataset(file, tokenizer, {
    ...(options.format ? { format: options.format } : {}),
    ...(options.csv ? { csv: options.csv } : {}),
  });
  const warnings = read.problems.map(formatProblem);
  if (read.badRecords > read.problems.length) {
    warnings.push(`${file}: ${read.badRecords - read.problems.length} more bad records skipped`);
  }
  // Examples with masked prompts keep one example per row (padding); plain
  // text is packed, as run_clm does.
  const masked = read.examples.some((e) => e.labels.some((l) => l < 0));
  const mode = options.packing === 'auto' ? (masked ? 'pad' : 'pack') : options.packing;
  const tokens = read.examples.reduce((n, e) => n + e.ids.length, 0);
  let rows: SequenceRow[];
  if (mode === 'pack') {
    rows = pack(read.examples, options.seqLen);
  } else {
    const padded = padExamples(read.examples, options.seqLen, tokenizer.eosId);
    rows = padded.rows;
    if (padded.truncatedExamples > 0) {
      warnings.push(
        `${file}: ${padded.truncatedExamples} examples longer than ${options.seqLen} tokens were truncated ` +
          `(${padded.truncatedTokens} tokens lost); raise --seq-len to keep them`,
      );
    }
  }
  if (rows.length === 0) {
    throw new Error(
      `${file}: no training rows: ${read.examples.length} examples, ${tokens} tokens, context ${options.seqLen}` +
        (mode === 'pack'
          ? ' (packing drops a tail shorter than the context: lower --seq-len or use --packing pad)'
          : ''),
    );
  }
  const skipped = read.badRecords > 0 ? `, ${read.badRecords} bad records skipped` : '';
  return {
    rows,
    description: `${read.examples.length} examples, ${tokens} tokens -> ${rows.length} rows of ${options.seqLen} (${mode === 'pack' ? 'packed' : 'padded'})${skipped}`,
    warnings,
  };
}

/** Consecutive batches of at most `size` rows. */
export function batchesOf(rows: readonly SequenceRow[], size: number, seqLen: number): Batch[] {
  const out: Batch[] = [];
  for (let i = 0; i < rows.length; i += size) out.push(collate(rows.slice(i, i + size), seqLen));
  return out;
}

/** "sha256:<hex>" of every row's ids, labels and length, in order. */
export function rowsFingerprint(rows: readonly SequenceRow[]): string {
  const hash = createHash('sha256');
  const length = new Int32Array(1);
  for (const row of rows) {
    length[0] = row.length;
    hash.update(new Uint8Array(row.ids.buffer, row.ids.byteOffset, row.ids.byteLength));
    hash.update(new Uint8Array(row.labels.buffer, row.labels.byteOffset, row.labels.byteLength));
    hash.update(new Uint8Array(length.buffer));
  }
  return `sha256:${hash.digest('hex')}`;
}
