// GPT-2 inference with a key/value cache: a prefill pass over a batch of
// prompts, left-padded to one length, then one-token steps that append each
// layer's keys and values. The math mirrors Gpt2Model.hidden() and its
// attention (dropout off); test/generate.test.ts holds the logits to
// model.forward() on each prompt alone.
//
// Different prompt lengths: a row of length L in a batch of width T has
// T - L pad columns on the left. Pad keys get a -1e9 score bias, whose
// softmax weight is exactly 0 in float32, and real tokens take position ids
// 0..L-1 (Hugging Face's cumsum(attention_mask) - 1), so a row's logits are
// those of running it alone, up to float summation order.
import { tf } from '@lorafleet/core';
import { type Gpt2Block, type Gpt2Model, causalMask, geluNew, layerNorm } from './model.js';

/** Score bias of a masked key: finite, so the all-pad query rows stay free of NaN. */
const MASKED = -1e9;

/** Token id fed at pad columns; any valid id, its keys are masked. */
const PAD_ID = 0;

// A type alias, not an interface, so that tf.tidy accepts it as a TensorContainer.
export type LayerKv = {
  keys: tf.Tensor4D; // [B, H, T, D]
  values: tf.Tensor4D; // [B, H, T, D]
};

/** The keys and values of every token seen so far, per layer, for a batch of rows. */
export class Gpt2KvCache {
  /** One entry per block, in model order. */
  layers: LayerKv[];
  /** Row b's cache columns [0, pads[b]) hold left padding, not tokens. */
  pads: number[];
  /** The position id of each row's next token (its token count so far). */
  positions: number[];

  constructor(layers: LayerKv[], pads: number[], positions: number[]) {
    this.layers = layers;
    this.pads = pads;
    this.positions = positions;
  }

  get batchSize(): number {
    return this.pads.length;
  }

  /** Cache columns T (tokens of the longest row, plus the pad of the others). */
  get length(): number {
    return this.layers[0]?.keys.shape[2] ?? 0;
  }

  /**
   * Keeps only `rows` (indices into the current batch, in the order given),
   * e.g. when others have finished, and drops the leading columns that are
   * padding in every kept row.
   */
  keepRows(rows: readonly number[]): void {
    for (const r of rows) {
      if (!Number.isInteger(r) || r < 0 || r >= this.batchSize)
        throw new Error(`KV cache: row ${r} is not in the batch of ${this.batchSize}`);
    }
    const same = rows.length === this.batchSize && rows.every((r, i) => r === i);
    if (same) return;
    const pads = rows.map((r) => this.pads[r]!);
    const trim = pads.length > 0 ? Math.min(...pads) : 0;
    const T = this.length;
    const next = tf.tidy(() => {
      const index = tf.tensor1d(Int32Array.from(rows), 'int32');
      const pick = (t: tf.Tensor4D) => {
        const kept = tf.gather(t, index, 0) as tf.Tensor4D; // [B', H, T, D]
        const [B, H, , D] = kept.shape;
        return trim > 0 ? kept.slice([0, 0, trim, 0], [B, H, T - trim, D]) : kept;
      };
      return this.layers.map((l) => ({ keys: pick(l.keys), values: pick(l.values) }));
    });
    this.disposeTensors();
    this.layers = next;
    this.pads = pads.map((p) => p - trim);
    this.positions = rows.map((r) => this.positions[r]!);
  }

  dispose(): void {
    this.disposeTensors();
    this.layers = [];
    this.pads = [];
    this.positions = [];
  }

  private disposeTensors(): void {
    for (const l of this.layers) tf.dispose([l.keys, l.values]);
  }
}

/**
 * Runs `prompts` (token ids, lengths may differ, each at most n_positions)
 * through the model as one left-padded batch. Returns the cache and each
 * row's final hidden state at its last token, [B, C] after ln_f; the caller
 * owns (and disposes) both.
 */
export function prefill(
  model: Gpt2Model,
  prompts: readonly (readonly number[])[],
): { cache: Gpt2KvCache; last: tf.Tensor2D } {
  const P = model.config.nPositions;
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new Error(`KV cache prefill: prompt ${i} is empty`);
    if (p.length > P)
      throw new Error(
        `KV cache prefill: prompt ${i} has ${p.length} tokens, more than n_positions (${P}); crop it`,
      );
  });
  const B = prompts.length;
  if (B === 0) throw new Error('KV cache prefill: no prompts given');
  const T = Math.max(...prompts.map((p) => p.length));
  const pads = prompts.map((p) => T - p.length);
  const ids = new Int32Array(B * T).fill(PAD_ID);
  const positions = new Int32Array(B * T);
  prompts.forEach((p, b) => {
    ids.set(p, b * T + pads[b]!);
    for (let t = pads[b]!; t < T; t++) positions[b * T + t] = t - pads[b]!;
  });
  const { last, layers } = tf.tidy(() => {
    const idsT = tf.tensor2d(ids, [B, T], 'int32');
    const posT = tf.tensor2d(positions, [B, T], 'int32');
    const mask = tf.add(causalMask(T), padBias(pads, T).reshape([B, 1, 1, T])); // [B, 1, T, T]
    return runBlocks(model, idsT, posT, mask, null);
  });
  return {
    cache: new Gpt2KvCache(
      layers,
      pads,
      prompts.map((p) => p.length),
    ),
    last,
  };
}

/**
 * Feeds one token per row (`tokens[b]` at position cache.positions[b]),
 * appends its keys and values to the cache and returns the final hidden
 * state [B, C] after ln_f, owned by the caller. Throws when a row's context
 * would exceed n_positions.
 */
export function decodeStep(
  model: Gpt2Model,
  cache: Gpt2KvCache,
  tokens: readonly number[],
): tf.Tensor2D {
  const B = cache.batchSize;
  const P = model.config.nPositions;
  if (tokens.length !== B)
    throw new Error(`KV cache step: ${tokens.length} tokens given for a batch of ${B} rows`);
  cache.positions.forEach((p, b) => {
    if (p >= P)
      throw new Error(
        `KV cache step: row ${b} is at position ${p}; the context of n_positions (${P}) is full`,
      );
  });
  const Tk = cache.length + 1;
  const { last, layers } = tf.tidy(() => {
    const idsT = tf.tensor2d(Int32Array.from(tokens), [B, 1], 'int32');
    const posT = tf.tensor2d(Int32Array.from(cache.positions), [B, 1], 'int32');
    const mask = padBias(cache.pads, Tk).reshape([B, 1, 1, Tk]); // [B, 1, 1, Tk]
    return runBlocks(model, idsT, posT, mask, cache.layers);
  });
  for (const l of cache.layers) tf.dispose([l.keys, l.values]);
  cache.layers = layers;
  cache.positions = cache.positions.map((p) => p + 1);
  return last;
}

/** [B, T]: 0 on a row's tokens, MASKED on its left padding. */
function padBias(pads: readonly number[], T: number): tf.Tensor2D {
  const bias = new Float32Array(pads.length * T);
  pads.forEach((pad, b) => bias.fill(MASKED, b * T, b * T + pad));
  return tf.tensor2d(bias, [pads.length, T]);
}

/**
 * The blocks of hidden() over new tokens ids [B, T] at positions [B, T],
 * attending to `past` keys/values (if any) then to themselves under `mask`
 * [B, 1, T, Tpast + T]. Returns the last column's hidden state [B, C] and the
 * extended keys/values of every layer.
 */
function runBlocks(
  model: Gpt2Model,
  ids: tf.Tensor2D,
  positions: tf.Tensor2D,
  mask: tf.Tensor,
  past: readonly LayerKv[] | null,
): { last: tf.Tensor2D; layers: LayerKv[] } {
  const c = model.config;
  const [B, T] = ids.shape;
  let x = tf.add(
    tf.gather(model.wte, ids.flatten()).reshape([B, T, c.nEmbd]),
    tf.gather(model.wpe, positions.flatten()).reshape([B, T, c.nEmbd]),
  ); // [B, T, C]
  const layers: LayerKv[] = [];
  model.blocks.forEach((block, i) => {
    const a = attend(block, layerNorm(x, block.ln1, c.layerNormEpsilon), mask, past?.[i], c.nHead);
    layers.push(a.kv);
    x = tf.add(x, a.y);
    const hidden = block.cFc.forward(layerNorm(x, block.ln2, c.layerNormEpsilon)); // [B, T, 4C]
    x = tf.add(x, block.mlpProj.forward(geluNew(hidden)));
  });
  const lastX = x.slice([0, T - 1, 0], [B, 1, c.nEmbd]).reshape([B, c.nEmbd]); // [B, C]
  return { last: layerNorm(lastX, model.lnF, c.layerNormEpsilon) as tf.Tensor2D, layers };
}

/** Gpt2Model's attention over cached plus new keys; x [B, T, C] -> [B, T, C]. */
function attend(
  block: Gpt2Block,
  x: tf.Tensor,
  mask: tf.Tensor,
  past: LayerKv | undefined,
  H: number,
): { y: tf.Tensor; kv: LayerKv } {
  const [B, T, C] = x.shape as [number, number, number];
  const D = C / H;
  const qkv = block.cAttn.forward(x); // [B, T, 3C]
  const [q, k, v] = tf
    .split(qkv, 3, 2)
    .map((t) => t.reshape([B, T, H, D]).transpose([0, 2, 1, 3]) as tf.Tensor4D); // [B, H, T, D]
  const keys = past ? tf.concat([past.keys, k!], 2) : k!; // [B, H, Tk, D]
  const values = past ? tf.concat([past.values, v!], 2) : v!; // [B, H, Tk, D]
  const scores = tf.add(tf.mul(tf.matMul(q!, keys, false, true), 1 / Math.sqrt(D)), mask); // [B, H, T, Tk]
  const y = tf.matMul(tf.softmax(scores), values).transpose([0, 2, 1, 3]).reshape([B, T, C]); // [B, T, C]
  return { y: block.attnProj.forward(y), kv: { keys, values } };
}
