// Rows of one length stacked into the flat, row-major batch a model consumes.

import type { SequenceRow } from './pack.js';
import { IGNORE_INDEX } from './tokenizer.js';

/** B rows of T tokens, row-major. */
export interface Batch {
  ids: Int32Array; // [B*T]
  labels: Int32Array; // [B*T], unshifted (the loss shifts), IGNORE_INDEX = no loss
  lengths: Int32Array; // [B], real tokens per row (right padding)
  batchSize: number; // B
  seqLen: number; // T
  /** KTO's rows: 1 where the row's completion is desirable, [B]; absent for other rows. */
  desirable?: Uint8Array;
}

/**
 * Stacks rows of length `seqLen` into a Batch. An empty list gives an empty
 * batch (a rank whose shard of the global batch is empty).
 */
export function collate(rows: readonly SequenceRow[], seqLen: number): Batch {
  const batchSize = rows.length;
  const ids = new Int32Array(batchSize * seqLen);
  const labels = new Int32Array(batchSize * seqLen);
  const lengths = new Int32Array(batchSize);
  rows.forEach((row, b) => {
    if (row.ids.length !== seqLen || row.labels.length !== seqLen) {
      throw new RangeError(
        `row ${b} has ${row.ids.length} ids and ${row.labels.length} labels; the batch needs ${seqLen}`,
      );
    }
    ids.set(row.ids, b * seqLen);
    labels.set(row.labels, b * seqLen);
    lengths[b] = row.length;
  });
  const flagged = rows.length > 0 && rows.every((r) => r.desirable !== undefined);
  const desirable = flagged ? Uint8Array.from(rows, (r) => (r.desirable ? 1 : 0)) : undefined;
  return { ids, labels, lengths, batchSize, seqLen, ...(desirable ? { desirable } : {}) };
}

/**
 * Tokens that contribute to the loss: positions t >= 1 of each row with a
 * label, since position t - 1 predicts labels[t] and labels[0] predicts
 * nothing. This is the weight for averaging gradients over ranks.
 */
export function lossTokenCount(batch: Batch): number {
  let n = 0;
  for (let b = 0; b < batch.batchSize; b++) {
    const row = b * batch.seqLen;
    for (let t = 1; t < batch.seqLen; t++) if (batch.labels[row + t] !== IGNORE_INDEX) n++;
  }
  return n;
}
