// A batch of token rows and the labels its logits rows predict (loss.ts, the
// scheduled step).

export const IGNORE_INDEX = -100;

export interface TokenBatch {
  ids: Int32Array; // [B * T]
  labels: Int32Array; // [B * T], IGNORE_INDEX where no loss is taken
  batchSize: number;
  seqLen: number;
  /** KTO's rows (kto.ts): 1 where the row's completion is desirable, [B]. */
  desirable?: Uint8Array;
  /** [B*T] rows packing documents apart: each token's position in its document (ForwardPassOptions.positionIds). */
  positionIds?: Int32Array;
}

/**
 * The labels each logits row predicts, [B * T]: row b * T + t predicts the
 * label at t + 1; each row's last position has nothing to predict
 * (IGNORE_INDEX), so the logits are used whole, without a [B, T-1, V] copy.
 * Checks the batch's sizes and that every label is in the vocabulary.
 */
export function shiftedLabels(batch: TokenBatch, vocabSize: number): Int32Array {
  const { batchSize: B, seqLen: T } = batch;
  if (batch.ids.length !== B * T || batch.labels.length !== B * T) {
    throw new Error(
      `batch holds ${batch.ids.length} ids and ${batch.labels.length} labels, expected ${B} x ${T}`,
    );
  }
  if (T < 2) throw new Error('sequences need at least 2 tokens for next-token prediction');
  const shifted = new Int32Array(B * T).fill(IGNORE_INDEX);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T - 1; t++) {
      const label = batch.labels[b * T + t + 1]!;
      if (label === IGNORE_INDEX) continue;
      if (label < 0 || label >= vocabSize)
        throw new Error(
          `label ${label} at row ${b}, position ${t + 1} is outside the vocabulary (0..${vocabSize - 1})`,
        );
      shifted[b * T + t] = label;
    }
  }
  return shifted;
}
