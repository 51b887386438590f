// Rows that pack several documents apart (data's best-fit packing, TRL's
// "bfd"): each token's position within its own document, as transformers
// reads packed position_ids, gives both its position (embedding or rotation)
// and what it attends to: the earlier tokens of its own document, and with a
// sliding window only the last `window` of those.
//
// Attention runs per document, as FlashAttention's variable-length kernels
// do: each document of two or more tokens is cut into a row of its own
// (documents of similar length grouped, each group padded to its longest),
// attended causally there (the fused kernel on webgpu), and joined back.
// Its cost is near the sum of the documents' squared lengths, not the packed
// row's. A one-token document attends to itself alone: its output is its
// value.
import { type CausalAttentionOptions, causalAttention, tf } from '@lorafleet/core';
import { attentionBias } from './kv-cache.js';

/** Where each packed document's tokens go for attention (host values: tensors are made where used). */
export interface DocumentLayout {
  /**
   * Documents of two or more tokens (their first flat token b * T + t and
   * length), in groups of similar length, each group attended as rows of
   * the group's `length` (its longest, rounded up to 8).
   */
  groups: { length: number; documents: { start: number; length: number }[] }[];
  /**
   * The flat tokens in order as runs: a document's outputs (group g, its
   * index d), or `length` tokens from `start` that attend to themselves alone
   * (one-token documents, padding): their outputs are their values.
   */
  runs: ({ group: number; document: number } | { start: number; length: number })[];
}

/** A group's rows waste at most this share of their length on padding. */
const GROUP_WASTE = 0.25;

/** The documents of packed positions [B*T] (checkPositionIds' rule), grouped by length. */
export function documentLayout(positionIds: Int32Array, B: number, T: number): DocumentLayout {
  checkPositionIds(positionIds, B, T);
  const spans: { start: number; length: number }[] = [];
  for (let i = 0; i < B * T; i++) {
    if (positionIds[i] === 0) spans.push({ start: i, length: 1 });
    else spans[spans.length - 1]!.length++;
  }
  // Longest first; a document joins the open group while padding it wastes little.
  const groups: DocumentLayout['groups'] = [];
  const where = new Map<number, { group: number; document: number }>();
  const multi = spans.filter((d) => d.length >= 2).sort((a, b) => b.length - a.length);
  for (const d of multi) {
    let group = groups.at(-1);
    if (!group || d.length < (1 - GROUP_WASTE) * group.length) {
      group = { length: Math.min(T, Math.ceil(d.length / 8) * 8), documents: [] };
      groups.push(group);
    }
    where.set(d.start, { group: groups.length - 1, document: group.documents.length });
    group.documents.push(d);
  }
  const runs: DocumentLayout['runs'] = [];
  for (const d of spans) {
    const placed = where.get(d.start);
    const last = runs.at(-1);
    if (placed) runs.push(placed);
    else if (last && 'start' in last && last.start + last.length === d.start) last.length++;
    else runs.push({ start: d.start, length: 1 });
  }
  return { groups, runs };
}

/**
 * softmax(softcap(scale q k^T) + causal mask) v within each document, on
 * q, k, v [B, T, H*D] token-major (keys and values repeated to H heads)
 * -> [B, T, H*D]. `window` limits each query to its last `window` keys;
 * dropout draws over each group's [documents, H, L, L] probabilities.
 * Slices, pads and concats only: their gradients are slices and pads too.
 */
export function documentAttention(
  q: tf.Tensor3D,
  k: tf.Tensor3D,
  v: tf.Tensor3D,
  heads: number,
  layout: DocumentLayout,
  options: Omit<CausalAttentionOptions, 'mask'>,
): tf.Tensor3D {
  const [B, T, C] = q.shape;
  const [H, D] = [heads, C / heads];
  return tf.tidy(() => {
    const [fq, fk, fv] = [q, k, v].map((x) => x.reshape([B * T, C]) as tf.Tensor2D); // [B*T, C]
    const outputs = layout.groups.map(({ length: L, documents }, g) => {
      // The group's documents as rows [n, H, L, D], each zero-padded after its end.
      const rows = (x: tf.Tensor2D) =>
        tf
          .concat(
            documents.map((d) =>
              tf.pad(x.slice([d.start, 0], [d.length, C]), [
                [0, L - d.length],
                [0, 0],
              ]),
            ),
          )
          .reshape([documents.length, L, H, D])
          .transpose([0, 2, 1, 3]);
      const positions = Int32Array.from({ length: L }, (_, t) => t);
      const mask = attentionBias(positions, [0], L, L, options.window ?? null); // [1, 1, L, L]
      const seed = options.dropout && { ...options.dropout, seed: options.dropout.seed + g };
      // Causal within each document's row: the fused kernel on webgpu, the composed ops elsewhere.
      const out = causalAttention(rows(fq!), rows(fk!), rows(fv!), {
        ...options,
        mask,
        ...(seed ? { dropout: seed } : {}),
      }); // [n, H, L, D]
      return out.transpose([0, 2, 1, 3]).reshape([documents.length * L, C]);
    });
    const pieces = layout.runs.map((run) => {
      if ('start' in run) return fv!.slice([run.start, 0], [run.length, C]);
      const { length: L, documents } = layout.groups[run.group]!;
      const n = documents[run.document]!.length;
      return outputs[run.group]!.slice([run.document * L, 0], [n, C]);
    });
    const joined = pieces.length === 1 ? pieces[0]! : tf.concat(pieces); // [B*T, C]
    return joined.reshape([B, T, C]) as tf.Tensor3D;
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
