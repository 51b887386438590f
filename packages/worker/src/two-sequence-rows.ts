// Rows of two sequences (2 x seqLen tokens each) from a JSONL file: the
// preference objectives' pairs, [chosen | rejected] (data's preference.ts),
// and KTO's examples, [completion | KL completion] (data's unpaired.ts). One
// reading path: the format checked, bad lines skipped under the policy,
// what was dropped or cut said, the rows described for the log.
import {
  type ReadSummary,
  type SequenceRow,
  type TextTokenizer,
  DEFAULT_REPORT_FIRST,
  DatasetError,
  datasetFormat,
  formatProblem,
  preferenceRows,
  readPreferenceJsonl,
  readUnpairedJsonl,
  unpairedRows,
} from '@lorafleet/data';
import type { PreparedRows, RowOptions } from './rows.js';

/** What a kind's rows are made of: rows, their source lines, what was dropped or cut. */
interface MadeRows {
  rows: SequenceRow[];
  rowLines: Int32Array;
  dropped: { line: number; message: string }[];
  truncatedSides: number;
  truncatedTokens: number;
}

/** One kind of two-sequence rows: how its file is read and its rows made and described. */
interface TwoSequenceKind<R extends ReadSummary> {
  /** What the objectives read, for the error on a file of another format. */
  reads: string;
  /** What one record is, plural ("pairs"), for the warnings. */
  records: string;
  read(file: string, tokenizer: TextTokenizer, options: RowOptions): Promise<R>;
  make(read: R, seqLen: number, padId: number): MadeRows;
  describe(read: R, made: MadeRows, seqLen: number): string;
}

const policyOf = (options: RowOptions) => ({
  ...(options.maxBadFraction !== undefined ? { maxBadFraction: options.maxBadFraction } : {}),
  raiseWith: '--max-bad-fraction',
});

/** Preference pairs, one pair per row. */
export const PAIR_ROWS: TwoSequenceKind<Awaited<ReturnType<typeof readPreferenceJsonl>>> = {
  reads:
    '--objective dpo, orpo, simpo and cpo read preference pairs from JSONL ({"prompt", "chosen", "rejected"} lines)',
  records: 'pairs',
  read: (file, tokenizer, options) => readPreferenceJsonl(file, tokenizer, policyOf(options)),
  make: (read, seqLen, padId) => preferenceRows(read.pairs, read.lines, seqLen, padId),
  describe: (read, made, seqLen) =>
    `${read.pairs.length} preference pairs -> ${made.rows.length} rows of 2 x ${seqLen} (chosen | rejected)`,
};

/** KTO's examples, one per row next to its KL sequence, the KL completions cycled within `klChunk`. */
export function ktoRows(
  klChunk: number,
): TwoSequenceKind<Awaited<ReturnType<typeof readUnpairedJsonl>>> {
  return {
    reads:
      '--objective kto reads unpaired feedback from JSONL ({"prompt", "completion", "label"} lines, or preference pairs, which it unpairs)',
    records: 'examples',
    read: (file, tokenizer, options) => readUnpairedJsonl(file, tokenizer, policyOf(options)),
    make: (read, seqLen, padId) => unpairedRows(read.examples, read.lines, seqLen, padId, klChunk),
    describe: (read, made, seqLen) => {
      const desirable = made.rows.filter((r) => r.desirable).length;
      const unpaired =
        read.pairs > 0 ? `${read.pairs} preference pairs unpaired (TRL's KTOTrainer) -> ` : '';
      return (
        `${unpaired}${read.examples.length} examples (${desirable} desirable, ${made.rows.length - desirable} undesirable kept) ` +
        `-> ${made.rows.length} rows of 2 x ${seqLen} (completion | KL completion, cycled within ${klChunk})`
      );
    },
  };
}

/** `file`'s rows of `kind`, with the warnings for what was skipped, dropped or cut. */
export async function prepareTwoSequenceRows<R extends ReadSummary>(
  file: string,
  tokenizer: TextTokenizer,
  options: RowOptions,
  kind: TwoSequenceKind<R>,
): Promise<PreparedRows> {
  if (datasetFormat(file, options.format) !== 'jsonl') throw new Error(`${file}: ${kind.reads}`);
  const read = await kind.read(file, tokenizer, options);
  const { seqLen } = options;
  let made: MadeRows;
  try {
    made = kind.make(read, seqLen, tokenizer.eosId);
  } catch (error) {
    if (error instanceof DatasetError) throw new DatasetError(`${file}: ${error.message}`);
    throw error;
  }
  const what = `${kind.records} that cannot train within --seq-len ${seqLen}`;
  const warnings = [...readWarnings(file, read), ...droppedWarnings(file, made.dropped, what)];
  if (made.truncatedSides > 0) {
    warnings.push(
      `${file}: ${made.truncatedSides} sequences longer than ${seqLen} tokens with their prompt were ` +
        `truncated (${made.truncatedTokens} tokens lost); raise --seq-len to keep them`,
    );
  }
  if (made.rows.length === 0) throw new Error(`${file}: no ${kind.records}`);
  const skipped = [
    read.badRecords > 0 ? `, ${read.badRecords} bad records skipped` : '',
    made.dropped.length > 0 ? `, ${made.dropped.length} dropped` : '',
  ].join('');
  return {
    rows: made.rows,
    rowLines: made.rowLines,
    description: `${kind.describe(read, made, seqLen)}${skipped}`,
    warnings,
  };
}

/** Warnings for a read's bad lines (the first few, then how many more). */
export function readWarnings(file: string, read: ReadSummary): string[] {
  const warnings = read.problems.map(formatProblem);
  if (read.badRecords > read.problems.length) {
    warnings.push(`${file}: ${read.badRecords - read.problems.length} more bad records skipped`);
  }
  return warnings;
}

/** Warnings for dropped records: `what`, then the first few lines with their reasons. */
function droppedWarnings(
  file: string,
  dropped: readonly { line: number; message: string }[],
  what: string,
): string[] {
  if (dropped.length === 0) return [];
  const shown = dropped.slice(0, DEFAULT_REPORT_FIRST);
  return [
    `${file}: dropped ${dropped.length} ${what}:`,
    ...shown.map((d) => `  ${file}:${d.line}: ${d.message}`),
    ...(dropped.length > shown.length ? [`  ... and ${dropped.length - shown.length} more`] : []),
  ];
}
