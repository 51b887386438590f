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
  /**
   * [B*T]: each token's position within its document where rows pack several
   * apart (SequenceRow.positionIds); the model then attends within documents.
   */
  positionIds?: Int32Array;
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
  const positionIds = collatePositions(rows, seqLen);
  return {
    ...{ ids, labels, lengths, batchSize, seqLen },
    ...(desirable ? { desirable } : {}),
    ...(positionIds ? { positionIds } : {}),
  };
}

/** The rows' positionIds stacked [B*T], or undefined when none has them (all or none must). */
function collatePositions(rows: readonly SequenceRow[], seqLen: number): Int32Array | undefined {
  const packed = rows.filter((r) => r.positionIds !== undefined).length;
  if (packed === 0) return undefined;
  if (packed < rows.length) {
    throw new RangeError(`${packed} of ${rows.length} rows carry positionIds: all or none must`);
  }
  const positionIds = new Int32Array(rows.length * seqLen);
  rows.forEach((row, b) => positionIds.set(row.positionIds!, b * seqLen));
  return positionIds;
}

/** The multiple that padToLongest rounds a batch's length up to: few distinct shapes. */
export const PAD_MULTIPLE = 8;

/**
 * The batch cut after its longest row, rounded up to a multiple of
 * `multiple` (at most T): padding to the longest, as transformers' collators
 * do, instead of to --seq-len. Right padding after a row's last real token
 * changes none of its logits (causal attention) and carries no label, so the
 * loss and gradient are those of the whole batch up to float rounding. A
 * batch with a label past its rows' lengths is returned as it is.
 */
export function padToLongest(batch: Batch, multiple = PAD_MULTIPLE): Batch {
  const { batchSize, seqLen, lengths, labels } = batch;
  const cut = roundedCut(Math.max(1, ...lengths), multiple, seqLen);
  if (cut === seqLen) return batch;
  for (let b = 0; b < batchSize; b++) {
    const row = labels.subarray(b * seqLen + cut, (b + 1) * seqLen);
    if (row.some((label) => label !== IGNORE_INDEX)) return batch;
  }
  return cutSequences(batch, 1, cut);
}

/**
 * A batch of two-sequence rows (preference pairs' [chosen | rejected],
 * KTO's [completion | KL completion], each half T of 2T) cut to 2T': each
 * half after the last labelled token of any row's same half, rounded up to
 * `multiple`. What follows a half's last label reaches no labelled logit
 * (causal attention), so the losses are the whole batch's up to rounding.
 */
export function padHalvesToLongest(batch: Batch, multiple = PAD_MULTIPLE): Batch {
  const { batchSize, seqLen, labels } = batch;
  const half = seqLen / 2;
  let needed = 1;
  for (let b = 0; b < batchSize; b++) {
    for (const start of [b * seqLen, b * seqLen + half])
      needed = labelledLength(labels, start, half, needed);
  }
  const cut = roundedCut(needed, multiple, half);
  return cut === half ? batch : cutSequences(batch, 2, cut);
}

/**
 * One past the last labelled position (label not IGNORE_INDEX) of the
 * `length` labels from `start`, looking no lower than `atLeast` (returned
 * when none lies there): the length a sequence is cut to.
 */
export function labelledLength(
  labels: ArrayLike<number>,
  start: number,
  length: number,
  atLeast = 0,
): number {
  for (let t = length - 1; t >= atLeast; t--) if (labels[start + t] !== IGNORE_INDEX) return t + 1;
  return atLeast;
}

const roundedCut = (needed: number, multiple: number, most: number) =>
  Math.min(most, Math.ceil(needed / multiple) * multiple);

/** Each row's `sequences` equal parts, each cut to its first `cut` tokens. */
function cutSequences(batch: Batch, sequences: number, cut: number): Batch {
  const { batchSize, seqLen } = batch;
  const part = seqLen / sequences;
  const take = (from: Int32Array) => {
    const to = new Int32Array(batchSize * sequences * cut);
    for (let p = 0; p < batchSize * sequences; p++)
      to.set(from.subarray(p * part, p * part + cut), p * cut);
    return to;
  };
  const positionIds = batch.positionIds ? { positionIds: take(batch.positionIds) } : {};
  return {
    ...batch,
    ids: take(batch.ids),
    labels: take(batch.labels),
    seqLen: sequences * cut,
    ...positionIds,
  };
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

/**
 * The batch's rows as one row of their real tokens end to end (TRL's
 * padding_free): [1, L], L their summed lengths rounded up to `multiple`.
 * Each row becomes a document of its own (positionIds restart at 0; a
 * packed row's documents keep theirs) whose first label is dropped (it would
 * be predicted from the row before; in its own row nothing predicts it),
 * and the tail is one-token documents of `padId` with no label. The models
 * attend within documents, so the loss and gradient are the padded batch's
 * up to float rounding, with no compute spent on padding. Token-loss rows
 * only: a two-sequence row (a preference pair, KTO's) is not one sequence.
 */
export function paddingFree(batch: Batch, multiple = PAD_MULTIPLE, padId = 0): Batch {
  const { batchSize: B, seqLen: T, lengths, ids, labels } = batch;
  if (batch.desirable) throw new RangeError("padding-free rows are token-loss rows, not KTO's");
  if (B === 0) return batch;
  const total = lengths.reduce((a, n) => a + n, 0);
  const L = Math.max(2, Math.ceil(total / multiple) * multiple);
  const out = {
    ids: new Int32Array(L).fill(padId),
    labels: new Int32Array(L).fill(IGNORE_INDEX),
    positionIds: new Int32Array(L), // the tail: 0, one-token documents
  };
  let at = 0;
  for (let b = 0; b < B; b++) {
    const [start, n] = [b * T, lengths[b]!];
    if (labels.subarray(start + n, start + T).some((l) => l !== IGNORE_INDEX))
      throw new RangeError(`row ${b} has a label past its ${n} tokens: it is not a padded row`);
    out.ids.set(ids.subarray(start, start + n), at);
    out.labels.set(labels.subarray(start + 1, start + n), at + 1); // its first label dropped
    const own = batch.positionIds?.subarray(start, start + n);
    for (let t = 0; t < n; t++) out.positionIds[at + t] = own ? own[t]! : t;
    at += n;
  }
  return { ...out, lengths: Int32Array.of(total), batchSize: 1, seqLen: L };
}
