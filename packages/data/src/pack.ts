// Turning examples into rows of exactly T tokens: packing (many examples per
// row, no padding) or padding (one example per row). Rows are right-padded, so
// positions [0, length) are real tokens and a causal model needs no extra
// attention mask: real tokens never attend to the padding after them.

import { IGNORE_INDEX, type TokenizedExample } from './tokenizer.js';

/** A row of the context length T. */
export interface SequenceRow {
  ids: Int32Array; // [T]
  labels: Int32Array; // [T], IGNORE_INDEX on padding
  length: number; // real tokens, at the start of the row; T when full
  /** KTO's rows (unpaired.ts): whether the row's completion is desirable. */
  desirable?: boolean;
  /**
   * Rows of several documents kept apart (best-fit.ts): each token's position
   * within its document, [T], 0 on padding. Absent: one sequence, positions 0..T-1.
   */
  positionIds?: Int32Array;
}

/** What to do with the tokens left over after the last full row. */
export type PackRemainder = { remainder: 'drop' } | { remainder: 'pad'; padId: number };

/**
 * Concatenates the examples into one stream and cuts it into rows of exactly T
 * tokens, labels moving with their ids. Examples are not separated here: the
 * readers already end every text document (and every completion) with EOS.
 * The stream's tail, shorter than T, is dropped by default (as Hugging Face's
 * run_clm does; it loses under T tokens) or padded into one last row. Rows
 * attend across document boundaries, as in run_clm.
 */
export function pack(
  examples: Iterable<TokenizedExample>,
  seqLen: number,
  options: PackRemainder = { remainder: 'drop' },
): SequenceRow[] {
  checkSeqLen(seqLen);
  const rows: SequenceRow[] = [];
  let ids = new Int32Array(seqLen);
  let labels = new Int32Array(seqLen);
  let filled = 0;
  for (const example of examples) {
    checkExample(example);
    let from = 0;
    while (from < example.ids.length) {
      const take = Math.min(seqLen - filled, example.ids.length - from);
      ids.set(example.ids.subarray(from, from + take), filled);
      labels.set(example.labels.subarray(from, from + take), filled);
      filled += take;
      from += take;
      if (filled === seqLen) {
        rows.push({ ids, labels, length: seqLen });
        ids = new Int32Array(seqLen);
        labels = new Int32Array(seqLen);
        filled = 0;
      }
    }
  }
  if (filled > 0 && options.remainder === 'pad') {
    checkPadId(options.padId);
    ids.fill(options.padId, filled);
    labels.fill(IGNORE_INDEX, filled);
    rows.push({ ids, labels, length: filled });
  }
  return rows;
}

/** A padded row and how many tokens truncation cut from its end. */
export interface PaddedRow extends SequenceRow {
  truncated: number;
}

/**
 * One example in one row: right-padded with `padId` (labels IGNORE_INDEX) or
 * truncated at the end (which may cut the completion's EOS, or, when the prompt
 * alone fills T, leave no trained token: check `truncated`).
 */
export function padOrTruncate(example: TokenizedExample, seqLen: number, padId: number): PaddedRow {
  checkSeqLen(seqLen);
  checkPadId(padId);
  checkExample(example);
  const length = Math.min(example.ids.length, seqLen);
  const ids = new Int32Array(seqLen).fill(padId);
  const labels = new Int32Array(seqLen).fill(IGNORE_INDEX);
  ids.set(example.ids.subarray(0, length));
  labels.set(example.labels.subarray(0, length));
  return { ids, labels, length, truncated: example.ids.length - length };
}

/** Which end of a too-long example a padded row keeps: TRL's truncation_mode. */
export type TruncationMode = 'keep_start' | 'keep_end';

/**
 * Examples longer than `seqLen` cut to their last `seqLen` tokens (TRL's
 * truncation_mode="keep_end"; padOrTruncate keeps the start), with the
 * counts to report.
 */
export function keepEnds(
  examples: readonly TokenizedExample[],
  seqLen: number,
): { examples: TokenizedExample[]; truncatedExamples: number; truncatedTokens: number } {
  checkSeqLen(seqLen);
  let truncatedExamples = 0;
  let truncatedTokens = 0;
  const cut = examples.map((example) => {
    checkExample(example);
    const over = example.ids.length - seqLen;
    if (over <= 0) return example;
    truncatedExamples++;
    truncatedTokens += over;
    return { ids: example.ids.slice(over), labels: example.labels.slice(over) };
  });
  return { examples: cut, truncatedExamples, truncatedTokens };
}

/** padOrTruncate over many examples, with the truncation counts to report. */
export function padExamples(
  examples: Iterable<TokenizedExample>,
  seqLen: number,
  padId: number,
): { rows: PaddedRow[]; truncatedExamples: number; truncatedTokens: number } {
  const rows: PaddedRow[] = [];
  let truncatedExamples = 0;
  let truncatedTokens = 0;
  for (const example of examples) {
    const row = padOrTruncate(example, seqLen, padId);
    if (row.truncated > 0) truncatedExamples++;
    truncatedTokens += row.truncated;
    rows.push(row);
  }
  return { rows, truncatedExamples, truncatedTokens };
}

function checkSeqLen(seqLen: number): void {
  if (!Number.isInteger(seqLen) || seqLen < 2) {
    throw new RangeError(
      `sequence length must be an integer >= 2 (one token predicts the next), got ${seqLen}`,
    );
  }
}

function checkPadId(padId: number): void {
  if (!Number.isInteger(padId) || padId < 0) {
    throw new RangeError(`padId must be a non-negative integer token id, got ${padId}`);
  }
}

function checkExample(example: TokenizedExample): void {
  if (example.ids.length !== example.labels.length) {
    throw new RangeError(
      `example has ${example.ids.length} ids but ${example.labels.length} labels; they must align`,
    );
  }
}
