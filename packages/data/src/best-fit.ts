// Packing that keeps documents apart (TRL's packing_strategy "bfd" and
// "bfd_split"): whole examples placed into rows of T tokens by best-fit
// decreasing, each token carrying its position within its own document so
// that the model attends within documents only and restarts positions at
// each (transformers' packed position_ids). Wrapped packing (pack.ts) cuts
// one stream instead, and its rows attend across document boundaries.

import type { SequenceRow } from './pack.js';
import { IGNORE_INDEX, type TokenizedExample } from './tokenizer.js';

/** How examples become rows of `--seq-len` tokens when packed (TRL's packing_strategy). */
export type PackingStrategy = 'wrapped' | 'bfd' | 'bfd_split';

/**
 * Examples binned at a time: TRL packs through datasets' map, whose batches
 * hold 1,000 examples, so its bins never mix examples of different batches.
 */
export const BEST_FIT_BLOCK = 1000;

export interface BestFitRows {
  rows: SequenceRow[];
  /** For each row, the index (into the examples) of the first example it holds. */
  firstExample: Int32Array;
  /** bfd: examples longer than T, and the tokens cut from their ends. */
  truncatedExamples: number;
  truncatedTokens: number;
}

/**
 * Best-fit decreasing, as TRL's `pack_dataset` (blocks of BEST_FIT_BLOCK
 * examples): longest first (ties in file order), each into the row whose
 * space left is the smallest that holds it (the oldest such row), else a
 * new row. "bfd" keeps an example's first T tokens; "bfd_split" cuts it into
 * pieces of T (the last shorter), each placed as a document. Each document's
 * first label is IGNORE_INDEX (nothing before it in its document predicts
 * it: TRL's collator masks every position_ids == 0); rows are right-padded
 * with `padId` (positions 0, no labels).
 */
export function packBestFit(
  examples: readonly TokenizedExample[],
  seqLen: number,
  strategy: 'bfd' | 'bfd_split',
  padId: number,
): BestFitRows {
  const rows: SequenceRow[] = [];
  const first: number[] = [];
  let truncatedExamples = 0;
  let truncatedTokens = 0;
  for (let start = 0; start < examples.length; start += BEST_FIT_BLOCK) {
    const block = examples.slice(start, start + BEST_FIT_BLOCK);
    const pieces: Piece[] = [];
    block.forEach((example, i) => {
      const n = example.ids.length;
      if (n === 0) return;
      const cut =
        strategy === 'bfd'
          ? [0]
          : Array.from({ length: Math.ceil(n / seqLen) }, (_, k) => k * seqLen);
      if (strategy === 'bfd' && n > seqLen) {
        truncatedExamples++;
        truncatedTokens += n - seqLen;
      }
      for (const from of cut)
        pieces.push({
          example,
          index: start + i,
          from,
          length: Math.min(seqLen, n - from),
        });
    });
    for (const bin of bestFitBins(pieces, seqLen)) {
      rows.push(packedRow(bin, seqLen, padId));
      first.push(bin[0]!.index);
    }
  }
  return { rows, firstExample: Int32Array.from(first), truncatedExamples, truncatedTokens };
}

/** A document to place: `length` tokens of an example from `from`. */
interface Piece {
  example: TokenizedExample;
  index: number;
  from: number;
  length: number;
}

/** TRL's greedy binning: the pieces of each bin, bins in the order they were opened. */
function bestFitBins(pieces: readonly Piece[], seqLen: number): Piece[][] {
  const order = pieces
    .map((_, i) => i)
    .sort((a, b) => pieces[b]!.length - pieces[a]!.length || a - b);
  const spaces = new MaxTree(seqLen);
  spaces.add(seqLen); // a new, empty bin is always available
  const bySpace = new Map<number, { pieces: Piece[]; used: number }[]>();
  const bins: { pieces: Piece[]; used: number }[] = [];
  for (const i of order) {
    const piece = pieces[i]!;
    const space = spaces.smallestAtLeast(piece.length);
    let bin: { pieces: Piece[]; used: number };
    if (space < seqLen) {
      const queue = bySpace.get(space)!;
      bin = queue.shift()!;
      if (queue.length === 0) spaces.remove(space);
    } else {
      bin = { pieces: [], used: 0 };
      bins.push(bin);
    }
    bin.pieces.push(piece);
    bin.used += piece.length;
    const left = seqLen - bin.used;
    if (left > 0) {
      const queue = bySpace.get(left) ?? bySpace.set(left, []).get(left)!;
      queue.push(bin);
      spaces.add(left);
    }
  }
  return bins.map((bin) => bin.pieces);
}

/** One row of T: the pieces side by side, positions restarting at each, then padding. */
function packedRow(pieces: readonly Piece[], seqLen: number, padId: number): SequenceRow {
  const ids = new Int32Array(seqLen).fill(padId);
  const labels = new Int32Array(seqLen).fill(IGNORE_INDEX);
  const positionIds = new Int32Array(seqLen);
  let at = 0;
  for (const { example, from, length } of pieces) {
    ids.set(example.ids.subarray(from, from + length), at);
    labels.set(example.labels.subarray(from, from + length), at);
    labels[at] = IGNORE_INDEX;
    for (let t = 0; t < length; t++) positionIds[at + t] = t;
    at += length;
  }
  return { ids, labels, length: at, positionIds };
}

/**
 * The values 1..max present, answering "the smallest present value >= v"
 * in log time (TRL's _SegmentTree: leaves indexed by value, nodes hold
 * their subtree's largest).
 */
class MaxTree {
  private readonly size: number;
  private readonly tree: Int32Array;

  constructor(private readonly max: number) {
    this.size = 1 << Math.ceil(Math.log2(Math.max(2, max)));
    this.tree = new Int32Array(2 * this.size);
  }

  add(value: number): void {
    this.set(value, value);
  }

  remove(value: number): void {
    this.set(value, 0);
  }

  smallestAtLeast(value: number): number {
    let i = 1;
    while (i < this.size) i = this.tree[2 * i]! >= value ? 2 * i : 2 * i + 1;
    return this.tree[i]!;
  }

  private set(value: number, to: number): void {
    if (value < 1 || value > this.max)
      throw new RangeError(`space ${value} outside 1..${this.max}`);
    let i = this.size + value - 1;
    this.tree[i] = to;
    for (i >>= 1; i >= 1; i >>= 1)
      this.tree[i] = Math.max(this.tree[2 * i]!, this.tree[2 * i + 1]!);
  }
}
