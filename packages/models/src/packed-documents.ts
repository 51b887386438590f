// Rows that pack several documents apart (data's best-fit packing, TRL's
// "bfd"): each token's position within its own document, as transformers
// reads packed position_ids, gives both its position (embedding or rotation)
// and what it attends to: the earlier tokens of its own document, and with a
// sliding window only the last `window` of those.
//
// Attention runs per document, as FlashAttention's variable-length kernels
// do: each document of two or more tokens is gathered into a row of its
// own (all padded to the longest), attended causally there (the fused
// kernel on webgpu), and scattered back. Its cost is the sum of the
// documents' squared lengths, not the packed row's. A one-token document
// attends to itself alone: its output is its value.
import { type CausalAttentionOptions, causalAttention, tf } from '@lorafleet/core';
import { attentionBias } from './kv-cache.js';

/** Where each packed document's tokens go for attention (host arrays: tensors are made where used). */
export interface DocumentLayout {
  /** Documents of two or more tokens. */
  count: number;
  /** The row length L each is gathered into: the longest, rounded up to a multiple of 8 (at most T). */
  length: number;
  /** [count * L]: the flat token (b * T + t) each slot reads; a slot past its document reads its last token. */
  gather: Int32Array;
  /** [B * T]: where each token's output is, slot d * L + i, or count * L + its own index (a one-token document: its value). */
  scatter: Int32Array;
}

/** The document rows of packed positions [B*T] (checkPositionIds' rule). */
export function documentLayout(positionIds: Int32Array, B: number, T: number): DocumentLayout {
  checkPositionIds(positionIds, B, T);
  const starts: number[] = [];
  const lengths: number[] = [];
  for (let i = 0; i < B * T; i++) {
    if (positionIds[i] === 0) {
      starts.push(i);
      lengths.push(1);
    } else lengths[lengths.length - 1]!++;
  }
  const docs = starts.map((start, d) => ({ start, n: lengths[d]! })).filter(({ n }) => n >= 2);
  const longest = Math.max(0, ...docs.map(({ n }) => n));
  const L = Math.min(T, Math.ceil(longest / 8) * 8);
  const gather = new Int32Array(docs.length * L);
  const scatter = Int32Array.from({ length: B * T }, (_, i) => docs.length * L + i);
  docs.forEach(({ start, n }, d) => {
    for (let i = 0; i < L; i++) gather[d * L + i] = start + Math.min(i, n - 1);
    for (let i = 0; i < n; i++) scatter[start + i] = d * L + i;
  });
  return { count: docs.length, length: L, gather, scatter };
}

/**
 * softmax(softcap(scale q k^T) + causal mask) v within each document: q, k, v
 * [B, H, T, D] (keys and values repeated to H heads) -> [B, H, T, D].
 * `window` limits each query to its last `window` keys; dropout draws over
 * the documents' [count, H, L, L] probabilities.
 */
export function documentAttention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  layout: DocumentLayout,
  options: Omit<CausalAttentionOptions, 'mask'>,
): tf.Tensor4D {
  const [B, H, T, D] = q.shape;
  const { count, length: L } = layout;
  return tf.tidy(() => {
    const flat = (x: tf.Tensor4D) => x.transpose([0, 2, 1, 3]).reshape([B * T, H * D]); // [B*T, H*D]
    const values = flat(v);
    let table = values;
    if (count > 0) {
      const index = tf.tensor1d(layout.gather, 'int32');
      const rows = (x: tf.Tensor4D) =>
        tf.gather(flat(x), index).reshape([count, L, H, D]).transpose([0, 2, 1, 3]); // [count, H, L, D]
      const positions = Int32Array.from({ length: L }, (_, t) => t);
      const mask = attentionBias(positions, [0], L, L, options.window ?? null); // [1, 1, L, L]
      // Causal within each document's row: the fused kernel on webgpu, the composed ops elsewhere.
      const out = causalAttention(rows(q), rows(k), rows(v), { ...options, mask }); // [count, H, L, D]
      table = tf.concat([out.transpose([0, 2, 1, 3]).reshape([count * L, H * D]), values]);
    }
    const scattered = tf.gather(table, tf.tensor1d(layout.scatter, 'int32')); // [B*T, H*D]
    return scattered.reshape([B, T, H, D]).transpose([0, 2, 1, 3]) as tf.Tensor4D;
  });
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
