// Rows that pack several documents apart (data's best-fit packing, TRL's
// "bfd"): each token's position within its own document, as transformers
// reads packed position_ids, gives both its position (embedding or rotation)
// and what it attends to: the earlier tokens of its own document, and with a
// sliding window only the last `window` of those.
import { tf } from '@lorafleet/core';
import { MASKED } from './kv-cache.js';

/**
 * The additive attention bias [B, 1, T, T] of packed rows: 0 where query t
 * may see key k (k in its document, at or before it, within `window`),
 * MASKED where not. Throws on positions that no packing gives (a token
 * placed further into its document than into its row).
 */
export function documentBias(
  positionIds: Int32Array,
  B: number,
  T: number,
  window: number | null,
): tf.Tensor4D {
  checkPositionIds(positionIds, B, T);
  const bias = new Float32Array(B * T * T).fill(MASKED);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const start = t - positionIds[b * T + t]!; // the first token of t's document
      const from = window === null ? start : Math.max(start, t - window + 1);
      bias.fill(0, (b * T + t) * T + from, (b * T + t) * T + t + 1);
    }
  }
  return tf.tensor4d(bias, [B, 1, T, T]);
}

/** positionIds [B*T] as packing makes them: each row's first token at 0, then +1 or a restart at 0. */
export function checkPositionIds(positionIds: Int32Array, B: number, T: number): void {
  if (positionIds.length !== B * T) {
    throw new RangeError(
      `positionIds has ${positionIds.length} entries; the batch [${B}, ${T}] needs ${B * T}`,
    );
  }
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const p = positionIds[b * T + t]!;
      const previous = t === 0 ? -1 : positionIds[b * T + t - 1]!;
      if (p !== 0 && p !== previous + 1) {
        throw new RangeError(
          `positionIds row ${b}, token ${t}: position ${p} after ${previous} (each document counts 0, 1, 2, ...)`,
        );
      }
    }
  }
}

/** `options` with the batch's packed positions, where it has them (what every loss passes to the model). */
export function withDocuments<O extends { positionIds?: Int32Array }>(
  options: O,
  batch: { positionIds?: Int32Array },
): O {
  return batch.positionIds ? { ...options, positionIds: batch.positionIds } : options;
}
