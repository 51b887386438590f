// paddingFree (TRL's padding_free): a batch's padded rows as one row of
// their real tokens, each a document at its own positions with its first
// label dropped, the tail one-token documents without labels; packed rows
// keep their documents. (That the loss and gradient equal the padded
// batch's: cli-packing.test.ts and, against TRL, trainer-parity.test.ts.)
import { describe, expect, it } from 'vitest';
import { type Batch, IGNORE_INDEX, collate, paddingFree } from '../src/index.js';

const X = IGNORE_INDEX;

/** A row of `seqLen` from its real ids and labels, padded with 0 / IGNORE_INDEX. */
function row(ids: number[], labels: number[], seqLen: number, positionIds?: number[]) {
  const pad = (v: number[], fill: number) =>
    Int32Array.from({ length: seqLen }, (_, i) => v[i] ?? fill);
  return {
    ids: pad(ids, 0),
    labels: pad(labels, X),
    length: ids.length,
    ...(positionIds ? { positionIds: pad(positionIds, 0) } : {}),
  };
}

describe('paddingFree', () => {
  it("puts the rows' real tokens end to end, each a document whose first label is dropped", () => {
    const batch = collate(
      [row([5, 6, 7], [5, 6, 7], 6), row([8, 9], [X, 9], 6), row([1, 2, 3, 4], [X, X, 3, 4], 6)],
      6,
    );
    const free = paddingFree(batch, 4);
    expect(free.batchSize).toBe(1);
    expect(free.seqLen).toBe(12); // 9 real tokens, rounded up to 4
    expect([...free.ids]).toEqual([5, 6, 7, 8, 9, 1, 2, 3, 4, 0, 0, 0]);
    expect([...free.labels]).toEqual([X, 6, 7, X, 9, X, X, 3, 4, X, X, X]);
    expect([...free.positionIds!]).toEqual([0, 1, 2, 0, 1, 0, 1, 2, 3, 0, 0, 0]);
    expect([...free.lengths]).toEqual([9]);
  });

  it("keeps a packed row's documents and their positions", () => {
    const packed = row([1, 2, 3, 4, 5], [X, 2, X, 4, 5], 8, [0, 1, 0, 1, 2]);
    const free = paddingFree(collate([packed, row([7, 8], [X, 8], 8, [0, 1])], 8), 8);
    expect([...free.positionIds!]).toEqual([0, 1, 0, 1, 2, 0, 1, 0]);
    expect([...free.labels]).toEqual([X, 2, X, 4, 5, X, 8, X]);
  });

  it('gives a row of at least two tokens, and an empty batch as it is', () => {
    expect(paddingFree(collate([row([3], [3], 4)], 4), 1).seqLen).toBe(2);
    const empty: Batch = collate([], 4);
    expect(paddingFree(empty)).toBe(empty);
  });

  it('refuses rows it would change: a label past the real tokens, KTO rows', () => {
    const late = row([1, 2], [1, 2], 4);
    late.labels[3] = 7;
    expect(() => paddingFree(collate([late], 4))).toThrow(/row 0 has a label past its 2 tokens/);
    const kto = { ...collate([row([1, 2], [X, 2], 4)], 4), desirable: Uint8Array.of(1) };
    expect(() => paddingFree(kto)).toThrow(/token-loss rows, not KTO's/);
  });
});
