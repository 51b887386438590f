// Rows that pack several documents apart (data's best-fit packing, TRL's
// "bfd"): each token's position within its own document, as transformers
// reads packed position_ids, gives both its position (embedding or rotation)
// and what it attends to: the earlier tokens of its own document, and with a
// sliding window only the last `window` of those.
//
// Attention runs per document, as FlashAttention's variable-length kernels
// do: each document of two or more tokens is split off into a row of its
// own (documents of similar length grouped, each group padded to its
// longest), attended causally there (the fused kernel on webgpu), and
// joined back.
// Its cost is near the sum of the documents' squared lengths, not the packed
// row's. A one-token document attends to itself alone: its output is its
// value. (That is the tape's way. The hand-scheduled webgpu step keeps the
// row whole: its kernels read each token's document span, documentSpans.)
import { type CausalAttentionOptions, causalAttention, tf } from '@lorafleet/core';
import { attentionBias } from './kv-cache.js';

/** Where each packed document's tokens go for attention (host values: tensors are made where used). */
export interface DocumentLayout {
  /**
   * The flat tokens (b * T + t) in order, as consecutive runs: a document of
   * two or more tokens (its group, and its index there), or tokens that
   * attend to themselves alone (one-token documents, padding).
   */
  runs: { length: number; document?: { group: number; index: number } }[];
  /**
   * Documents of similar length, longest first, each group attended as rows
   * of `length` (its longest, rounded up to 8): each document's run.
   */
  groups: { length: number; runs: number[] }[];
}

/** A group's rows waste at most this share of their length on padding. */
const GROUP_WASTE = 0.25;

/** The documents of packed positions [B*T] (checkPositionIds' rule), grouped by length. */
export function documentLayout(positionIds: Int32Array, B: number, T: number): DocumentLayout {
  checkPositionIds(positionIds, B, T);
  const spans: number[] = []; // each document's length, in order
  for (let i = 0; i < B * T; i++) {
    if (positionIds[i] === 0) spans.push(1);
    else spans[spans.length - 1]!++;
  }
  const runs: DocumentLayout['runs'] = [];
  for (const length of spans) {
    const last = runs.at(-1);
    if (length >= 2) runs.push({ length, document: { group: -1, index: -1 } });
    else if (last && !last.document) last.length++;
    else runs.push({ length: 1 });
  }
  // Longest first; a document joins the open group while padding it wastes little.
  const groups: DocumentLayout['groups'] = [];
  const order = runs.flatMap((run, r) => (run.document ? [r] : []));
  order.sort((a, b) => runs[b]!.length - runs[a]!.length || a - b);
  for (const r of order) {
    const run = runs[r]!;
    let group = groups.at(-1);
    if (!group || run.length < (1 - GROUP_WASTE) * group.length) {
      group = { length: Math.min(T, Math.ceil(run.length / 8) * 8), runs: [] };
      groups.push(group);
    }
    run.document = { group: groups.length - 1, index: group.runs.length };
    group.runs.push(r);
  }
  return { runs, groups };
}

/**
 * softmax(softcap(scale q k^T) + causal mask) v within each document, on
 * q, k, v [B, T, H*D] token-major (keys and values repeated to H heads)
 * -> [B, T, H*D]. `window` limits each query to its last `window` keys;
 * dropout draws over each group's [documents, H, L, L] probabilities.
 * Splits, pads and concats: their gradients are concats, slices and splits,
 * each the size of its input (a slice of the whole would send back a whole
 * gradient per document).
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
  const sizes = layout.runs.map((run) => run.length);
  return tf.tidy(() => {
    // Each run's tokens [length, C], of q, k and v.
    const pieces = (x: tf.Tensor3D) => {
      const flat = x.reshape([B * T, C]) as tf.Tensor2D;
      return sizes.length === 1 ? [flat] : tf.split(flat, sizes, 0);
    };
    const [pq, pk, pv] = [pieces(q), pieces(k), pieces(v)];
    const outputs = layout.groups.map(({ length: L, runs }, g) => {
      // The group's documents as rows [n, H, L, D], each zero-padded after its end.
      const rows = (p: tf.Tensor[]) =>
        tf
          .concat(
            runs.map((r) =>
              tf.pad(p[r]!, [
                [0, L - sizes[r]!],
                [0, 0],
              ]),
            ),
          )
          .reshape([runs.length, L, H, D])
          .transpose([0, 2, 1, 3]);
      const positions = Int32Array.from({ length: L }, (_, t) => t);
      const mask = attentionBias(positions, [0], L, L, options.window ?? null); // [1, 1, L, L]
      const seed = options.dropout && { ...options.dropout, seed: options.dropout.seed + g };
      // Causal within each document's row: the fused kernel on webgpu, the composed ops elsewhere.
      const out = causalAttention(rows(pq), rows(pk), rows(pv), {
        ...options,
        mask,
        ...(seed ? { dropout: seed } : {}),
      }); // [n, H, L, D]
      const perDocument = out.transpose([0, 2, 1, 3]).reshape([runs.length * L, C]);
      return runs.length === 1 ? [perDocument] : tf.split(perDocument, runs.length, 0); // [L, C] each
    });
    const joined = layout.runs.map((run, r) => {
      if (!run.document) return pv[r]!;
      const { group, index } = run.document;
      return outputs[group]![index]!.slice([0, 0], [run.length, C]); // [length, C] of [L, C]
    });
    return (joined.length === 1 ? joined[0]! : tf.concat(joined)).reshape([B, T, C]) as tf.Tensor3D;
  });
}

/**
 * Each token's document as (its first token, its last token) within its row,
 * [B*T, 2] flat: what the fused attention kernels read (core's
 * AttentionShaping.spans). positionIds as checkPositionIds requires.
 */
export function documentSpans(positionIds: Int32Array, B: number, T: number): Int32Array {
  checkPositionIds(positionIds, B, T);
  const spans = new Int32Array(2 * B * T);
  for (let b = 0; b < B; b++) {
    let last = T - 1; // the last token of the document being walked back through
    for (let t = T - 1; t >= 0; t--) {
      const i = b * T + t;
      spans[2 * i] = t - positionIds[i]!;
      spans[2 * i + 1] = last;
      if (positionIds[i] === 0) last = t - 1;
    }
  }
  return spans;
}

/**
 * Refuses a pass of rows of T tokens (with packed `positionIds`, documents
 * up to their longest) past the model's `context` positions (`field` names
 * it in config.json). Rows of packed documents may be longer than the
 * context (--padding-free puts a micro-batch in one row); no document may.
 */
export function checkContext(
  T: number,
  positionIds: Int32Array | undefined,
  context: number,
  field: string,
): void {
  const longest = positionIds ? positionIds.reduce((a, p) => Math.max(a, p + 1), 0) : T;
  if (longest <= context) return;
  const what = positionIds ? 'a packed document of' : 'sequence of';
  throw new Error(`${what} ${longest} tokens exceeds the model's context of ${context} (${field})`);
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
