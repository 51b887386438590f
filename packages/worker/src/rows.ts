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
  type LossScope,
  type SequenceRow,
  type TextTokenizer,
  type UntrainableDrop,
  collate,
  dropUntrainable,
  firstTrainedPosition,
  formatProblem,
  keepEnds,
  labelledLength,
  pack,
  packBestFit,
  padExamples,
  padHalvesToLongest,
  padToLongest,
  paddingFree,
  readDataset,
} from '@lorafleet/data';
import { inputTokenCounts } from '@lorafleet/models';
import { PAIR_ROWS, ktoRows, prepareTwoSequenceRows, readWarnings } from './two-sequence-rows.js';

export type Packing = 'auto' | 'pack' | 'pad';

export interface RowOptions {
  seqLen: number;
  packing: Packing;
  /**
   * Every row padded to seqLen in each batch (max_length), or a batch's rows
   * end to end in one row without padding (free: TRL's padding_free,
   * token-loss rows only); absent: to the batch's longest (batchesOf).
   */
  padding?: 'max_length' | 'free';
  /** JSONL/CSV: the share of bad records (skipped) past which reading fails (default 0.01). */
  maxBadFraction?: number;
  format?: DatasetFormat;
  csv?: CsvColumns;
  /** Which tokens of prompt/completion and conversation records are trained; absent: completions and assistant turns only. */
  loss?: LossScope;
  /** Padded rows keep a too-long example's last seqLen tokens (TRL's truncation_mode="keep_end"); absent: its first. */
  truncation?: 'keep_end';
  /**
   * Packed rows keep examples whole and apart, best fit decreasing (TRL's
   * packing_strategy; data's packBestFit); with --packing auto every example
   * kind is packed. Absent: "wrapped", one stream cut every seqLen tokens.
   */
  packingStrategy?: 'bfd' | 'bfd_split';
  /** Preference pairs for --objective dpo, orpo, simpo or cpo: each row is [chosen | rejected], 2 x seqLen tokens. */
  pairs?: boolean;
  /**
   * KTO's unpaired examples (--objective kto): each row is [completion | KL
   * completion], 2 x seqLen tokens, the KL completions cycled within chunks
   * of `klChunk` examples (the run's batch size).
   */
  kto?: { klChunk: number };
}

export interface PreparedRows {
  rows: SequenceRow[];
  /** For each row, the source line of the example it starts with (file:line in messages). */
  rowLines: Int32Array;
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
  if (options.pairs) return prepareTwoSequenceRows(file, tokenizer, options, PAIR_ROWS);
  if (options.kto)
    return prepareTwoSequenceRows(file, tokenizer, options, ktoRows(options.kto.klChunk));
  const read = await readDataset(file, tokenizer, {
    ...(options.format ? { format: options.format } : {}),
    ...(options.csv ? { csv: options.csv } : {}),
    ...(options.loss ? { loss: options.loss } : {}),
    badLines: {
      ...(options.maxBadFraction !== undefined ? { maxBadFraction: options.maxBadFraction } : {}),
      raiseWith: '--max-bad-fraction',
    },
  });
  const warnings = readWarnings(file, read);
  // Prompt/completion and conversation examples, and others with masked
  // tokens, keep one example per row (padding); plain text is packed, as
  // run_clm does.
  // (Best-fit packing keeps examples whole: every kind is packed.)
  const whole = read.prompted || read.examples.some((e) => e.labels.some((l) => l < 0));
  const strategy = options.packingStrategy;
  const auto = whole && !strategy ? 'pad' : 'pack';
  const mode = options.packing === 'auto' ? auto : options.packing;
  // Rows hold examples cut to seqLen: padded, or best fit ("bfd" truncates, "bfd_split" does not).
  const cuts = mode === 'pad' || strategy === 'bfd';
  const keepEnd = options.truncation === 'keep_end';
  if (keepEnd && !cuts)
    warnings.push('--truncation-mode keep_end: the rows are packed, no example is truncated');
  const cut = keepEnd && cuts ? keepEnds(read.examples, options.seqLen) : undefined;
  const kept = dropUntrainable(
    cut ? { ...read, examples: cut.examples } : read,
    cuts ? options.seqLen : undefined,
  );
  warnings.push(...untrainableWarnings(kept, options.seqLen));
  const tokens = kept.examples.reduce((n, e) => n + e.ids.length, 0);
  const made = makeRows(kept, options, mode, tokenizer.eosId, warnings);
  if (made.truncated) {
    warnings.push(...truncationWarnings(file, cut ?? made.truncated, options.seqLen, keepEnd));
  }
  if (made.rows.length === 0) {
    throw new Error(
      `${file}: no training rows: ${kept.examples.length} examples, ${tokens} tokens, context ${options.seqLen}` +
        (mode === 'pack'
          ? ' (packing drops a tail shorter than the context: lower --seq-len or use --packing pad)'
          : ''),
    );
  }
  const skipped = [
    read.badRecords > 0 ? `, ${read.badRecords} bad records skipped` : '',
    kept.dropped > 0 ? `, ${kept.dropped} without a trained token dropped` : '',
  ].join('');
  const layout = mode === 'pack' ? `packed${strategy ? `, ${strategy}` : ''}` : 'padded';
  const free =
    options.padding === 'free' ? "; padding-free: each micro-batch's rows end to end" : '';
  return {
    ...made,
    description: `${kept.examples.length} examples, ${tokens} tokens -> ${made.rows.length} rows of ${options.seqLen} (${layout}${free})${skipped}`,
    warnings,
  };
}

/** How many examples were cut to fit a row, and the tokens cut. */
type Truncation = { truncatedExamples: number; truncatedTokens: number };

function truncationWarnings(
  file: string,
  { truncatedExamples: n, truncatedTokens: lost }: Truncation,
  seqLen: number,
  keepEnd: boolean,
): string[] {
  if (n === 0) return [];
  const how = keepEnd ? `cut to their last ${seqLen} (--truncation-mode keep_end; ` : 'truncated (';
  return [
    `${file}: ${n} examples longer than ${seqLen} tokens were ${how}${lost} tokens lost); raise --seq-len to keep them`,
  ];
}

function untrainableWarnings(drop: UntrainableDrop, seqLen: number): string[] {
  if (drop.dropped === 0) return [];
  const more = drop.dropped - drop.problems.length;
  return [
    `${drop.file}: dropped ${drop.dropped} examples with no token to train on within --seq-len ${seqLen} ` +
      '(raise --seq-len or shorten their prompts to keep them):',
    ...drop.problems.map((p) => `  ${formatProblem(p)}`),
    ...(more > 0 ? [`  ... and ${more} more`] : []),
  ];
}

/** Wrapped packed rows (one stream cut every seqLen), with the example each row starts in. */
function packedRows(
  kept: UntrainableDrop,
  seqLen: number,
  warnings: string[],
): { rows: SequenceRow[]; rowLines: Int32Array } {
  const all = pack(kept.examples, seqLen);
  // Row r starts at token r * seqLen of the stream: the example holding it.
  const firstExample: number[] = [];
  let [example, end] = [0, kept.examples[0]?.ids.length ?? 0];
  for (let r = 0; r < all.length; r++) {
    while (example + 1 < kept.examples.length && end <= r * seqLen)
      end += kept.examples[++example]!.ids.length;
    firstExample.push(example);
  }
  return trainedRows(all, firstExample, kept, seqLen, warnings);
}

/**
 * Packed rows less those holding prompt tokens only (a wrapped row, or a
 * piece of a split example, may), with the source line of the example each
 * starts with (`firstExample`, indices into kept.examples).
 */
function trainedRows(
  packed: SequenceRow[],
  firstExample: ArrayLike<number>,
  kept: UntrainableDrop,
  seqLen: number,
  warnings: string[],
): { rows: SequenceRow[]; rowLines: Int32Array } {
  const rows: SequenceRow[] = [];
  const lines: number[] = [];
  packed.forEach((row, r) => {
    if (firstTrainedPosition(row, seqLen) < 0) return;
    rows.push(row);
    lines.push(kept.lines[firstExample[r]!] ?? 0);
  });
  if (rows.length < packed.length) {
    warnings.push(
      `${kept.file}: dropped ${packed.length - rows.length} packed rows that hold prompt tokens only`,
    );
  }
  return { rows, rowLines: Int32Array.from(lines) };
}

/** The rows of `mode`, and how many examples were cut to fit one (padding and "bfd" cut; wrapped packing does not). */
function makeRows(
  kept: UntrainableDrop,
  options: RowOptions,
  mode: 'pack' | 'pad',
  padId: number,
  warnings: string[],
): { rows: SequenceRow[]; rowLines: Int32Array; truncated?: Truncation } {
  const strategy = options.packingStrategy;
  if (mode === 'pack' && strategy)
    return bestFitRows(kept, options.seqLen, strategy, padId, warnings);
  if (mode === 'pack') return packedRows(kept, options.seqLen, warnings);
  const padded = padExamples(kept.examples, options.seqLen, padId);
  return { rows: padded.rows, rowLines: Int32Array.from(kept.lines), truncated: padded };
}

/** Best-fit packed rows (data's packBestFit), as trainedRows keeps them. */
function bestFitRows(
  kept: UntrainableDrop,
  seqLen: number,
  strategy: 'bfd' | 'bfd_split',
  padId: number,
  warnings: string[],
): { rows: SequenceRow[]; rowLines: Int32Array; truncated?: Truncation } {
  const packed = packBestFit(kept.examples, seqLen, strategy, padId);
  const trained = trainedRows(packed.rows, packed.firstExample, kept, seqLen, warnings);
  // bfd_split cuts nothing: its pieces all train.
  const truncated = strategy === 'bfd' ? packed : undefined;
  return { ...trained, ...(truncated ? { truncated } : {}) };
}

/**
 * Rows packing documents apart: their longest document's tokens rounded up
 * to 8 (at most seqLen), what attention spans (models' documentLayout);
 * undefined for other rows.
 */
export function documentSpan(rows: readonly SequenceRow[], seqLen: number): number | undefined {
  if (!rows.some((row) => row.positionIds)) return undefined;
  let longest = 1;
  for (const { positionIds } of rows) {
    for (const p of positionIds ?? []) longest = Math.max(longest, p + 1);
  }
  return Math.min(seqLen, Math.ceil(longest / 8) * 8);
}

/**
 * Whether the micro-batches pack documents apart (--packing-strategy bfd or
 * bfd_split, or --padding-free): the model then attends within each.
 */
export function packsDocuments(
  options: Pick<RowOptions, 'packing' | 'packingStrategy' | 'padding'>,
): boolean {
  return (
    options.padding === 'free' ||
    (options.packingStrategy !== undefined && options.packing !== 'pad')
  );
}

/** Tokens in one row: seqLen, or twice that for preference pairs ([chosen | rejected]) and KTO's rows. */
export function rowLength(options: Pick<RowOptions, 'seqLen' | 'pairs' | 'kto'>): number {
  return options.pairs || options.kto ? 2 * options.seqLen : options.seqLen;
}

/**
 * Consecutive batches of at most `size` rows, each padded to its longest row
 * (padToLongest; preference pairs and KTO's rows: each half to its longest,
 * padHalvesToLongest) unless --padding max_length; --padding-free: each one
 * row of its rows end to end (paddingFree).
 */
export function batchesOf(
  rows: readonly SequenceRow[],
  size: number,
  options: Pick<RowOptions, 'seqLen' | 'pairs' | 'kto' | 'padding'>,
): Batch[] {
  const out: Batch[] = [];
  const twoSequences = options.pairs === true || options.kto !== undefined;
  if (options.padding === 'free' && twoSequences)
    throw new Error(
      '--padding-free puts token-loss rows end to end; a preference pair or KTO row is two sequences',
    );
  const cut =
    options.padding === 'max_length'
      ? (batch: Batch) => batch
      : options.padding === 'free'
        ? (batch: Batch) => paddingFree(batch)
        : twoSequences
          ? padHalvesToLongest
          : padToLongest;
  for (let i = 0; i < rows.length; i += size) {
    out.push(cut(collate(rows.slice(i, i + size), rowLength(options))));
  }
  return out;
}

/**
 * [N] each row's length as batchesOf cuts it: its real tokens, or for a
 * preference pair or KTO row the longer half up to its last label. What
 * --train-sampling-strategy group_by_length groups rows by.
 */
export function paddedLengths(
  rows: readonly SequenceRow[],
  options: Pick<RowOptions, 'seqLen' | 'pairs' | 'kto'>,
): Uint32Array {
  if (!options.pairs && !options.kto) return Uint32Array.from(rows, (row) => row.length);
  const half = options.seqLen;
  return Uint32Array.from(rows, ({ labels }) =>
    Math.max(labelledLength(labels, 0, half), labelledLength(labels, half, half)),
  );
}

/**
 * [N] each row's tokens under TRL's attention mask (what its num_tokens
 * counts; models' inputTokenCounts): a token-loss row's real tokens, a
 * preference pair's two sequences', a KTO row's example (not its KL
 * sequence, which TRL masks apart).
 */
export function inputLengths(
  rows: readonly SequenceRow[],
  options: Pick<RowOptions, 'seqLen' | 'pairs' | 'kto'>,
): Uint32Array {
  if (!options.pairs && !options.kto) return Uint32Array.from(rows, (row) => row.length);
  return Uint32Array.from(rows, ({ ids, labels }) => {
    const [first, second] = inputTokenCounts({ ids, labels, batchSize: 2, seqLen: options.seqLen });
    return options.kto ? first! : first! + second!;
  });
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
    if (row.desirable !== undefined) hash.update(row.desirable ? 'desirable' : 'undesirable');
  }
  return `sha256:${hash.digest('hex')}`;
}
