// Inference with a key/value cache, for any CausalLM: a prefill pass over a
// batch of prompts, left-padded to one length, then one-token steps that
// append each layer's keys and values. The family's extend() runs the layers;
// this module keeps the cache and builds the attention bias.
//
// Different prompt lengths: a row of length L in a batch of width T has
// T - L pad columns on the left. Pad keys get a -1e9 score bias, whose
// softmax weight is exactly 0 in float32, and real tokens take position ids
// 0..L-1 (Hugging Face's cumsum(attention_mask) - 1), so a row's logits are
// those of running it alone, up to float summation order.
//
// A model whose rotary embedding changes with a row's length (rotarySwitch:
// Phi-3's LongRoPE) gets its cache recomputed from the row's tokens when a row
// first passes that length, so cached logits keep equal a full forward.
import { tf } from '@lorafleet/core';
import type { CausalLM, LayerKv } from './causal-lm.js';

/** Score bias of a masked key: finite, so the all-pad query rows stay free of NaN. */
export const MASKED = -1e9;

/** Token id fed at pad columns; any valid id, its keys are masked. */
const PAD_ID = 0;

export type { LayerKv };

/** The keys and values of every token seen so far, per layer, for a batch of rows. */
export class KvCache {
  /** One entry per layer, in model order. */
  layers: LayerKv[];
  /** Row b's cache columns [0, pads[b]) hold left padding, not tokens. */
  pads: number[];
  /** Each row's tokens so far, to recompute the cache from (rotarySwitch). */
  tokens: number[][];

  constructor(layers: LayerKv[], pads: number[], tokens: number[][]) {
    this.layers = layers;
    this.pads = pads;
    this.tokens = tokens;
  }

  /** The position id of each row's next token (its token count so far). */
  get positions(): number[] {
    return this.tokens.map((t) => t.length);
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
    this.tokens = rows.map((r) => this.tokens[r]!);
  }

  dispose(): void {
    this.disposeTensors();
    this.layers = [];
    this.pads = [];
    this.tokens = [];
  }

  private disposeTensors(): void {
    for (const l of this.layers) tf.dispose([l.keys, l.values]);
  }
}

/** The former name, from when only GPT-2 had a cache. */
export { KvCache as Gpt2KvCache };

/**
 * Runs `prompts` (token ids, lengths may differ, each at most the context
 * length) through the model as one left-padded batch. Returns the cache and
 * each row's final hidden state at its last token, [B, C]; the caller owns
 * (and disposes) both.
 */
export function prefill(
  model: CausalLM,
  prompts: readonly (readonly number[])[],
): { cache: KvCache; last: tf.Tensor2D } {
  const P = model.modelConfig.contextLength;
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new Error(`KV cache prefill: prompt ${i} is empty`);
    if (p.length > P)
      throw new Error(
        `KV cache prefill: prompt ${i} has ${p.length} tokens, more than the context length (${P}); crop it`,
      );
  });
  const B = prompts.length;
  if (B === 0) throw new Error('KV cache prefill: no prompts given');
  const T = Math.max(...prompts.map((p) => p.length));
  const pads = prompts.map((p) => T - p.length);
  const ids = new Int32Array(B * T).fill(PAD_ID);
  const positions = new Int32Array(B * T);
  const queryPositions = new Int32Array(B * T);
  prompts.forEach((p, b) => {
    ids.set(p, b * T + pads[b]!);
    for (let t = 0; t < T; t++) {
      queryPositions[b * T + t] = t - pads[b]!;
      positions[b * T + t] = Math.max(0, t - pads[b]!);
    }
  });
  const { last, layers } = tf.tidy(() =>
    model.extend({
      ids: tf.tensor2d(ids, [B, T], 'int32'),
      positions: tf.tensor2d(positions, [B, T], 'int32'),
      positionIds: positions,
      bias: (window) => attentionBias(queryPositions, pads, T, T, window),
      past: null,
    }),
  );
  return {
    cache: new KvCache(
      layers,
      pads,
      prompts.map((p) => [...p]),
    ),
    last,
  };
}

/**
 * Feeds one token per row (`tokens[b]` at position cache.positions[b]),
 * appends its keys and values to the cache and returns the final hidden
 * state [B, C], owned by the caller. Throws when a row's context would
 * exceed the model's context length.
 */
export function decodeStep(
  model: CausalLM,
  cache: KvCache,
  tokens: readonly number[],
): tf.Tensor2D {
  const B = cache.batchSize;
  const P = model.modelConfig.contextLength;
  if (tokens.length !== B)
    throw new Error(`KV cache step: ${tokens.length} tokens given for a batch of ${B} rows`);
  const current = cache.positions;
  current.forEach((p, b) => {
    if (p >= P)
      throw new Error(
        `KV cache step: row ${b} is at position ${p}; the context length (${P}) is full`,
      );
  });
  const rotarySwitch = model.modelConfig.rotarySwitch;
  if (rotarySwitch !== undefined && current.some((p) => p === rotarySwitch))
    return refill(model, cache, tokens);
  const Tk = cache.length + 1;
  const positions = Int32Array.from(current);
  const { last, layers } = tf.tidy(() =>
    model.extend({
      ids: tf.tensor2d(Int32Array.from(tokens), [B, 1], 'int32'),
      positions: tf.tensor2d(positions, [B, 1], 'int32'),
      positionIds: positions,
      bias: (window) => attentionBias(positions, cache.pads, 1, Tk, window),
      past: cache.layers,
    }),
  );
  for (const l of cache.layers) tf.dispose([l.keys, l.values]);
  cache.layers = layers;
  cache.tokens.forEach((t, b) => t.push(tokens[b]!));
  return last;
}

/**
 * decodeStep for a batch in which a row passes the model's rotarySwitch with
 * this token: every row's keys are computed again from its tokens (a prefill)
 * into `cache`.
 */
function refill(model: CausalLM, cache: KvCache, tokens: readonly number[]): tf.Tensor2D {
  const { cache: fresh, last } = prefill(
    model,
    cache.tokens.map((t, b) => [...t, tokens[b]!]),
  );
  for (const l of cache.layers) tf.dispose([l.keys, l.values]);
  cache.layers = fresh.layers;
  cache.pads = fresh.pads;
  cache.tokens = fresh.tokens;
  return last;
}

/**
 * [B, 1, T, Tk]: 0 where query t of row b (at position queryPositions[b, t])
 * may see cache column k, MASKED where not. Column k of row b holds the token
 * at position k - pads[b] (left padding below 0); a key is visible when it is
 * a token, not in the future, and (with a window) fewer than `window`
 * positions back, as Hugging Face's sliding_window_overlay.
 */
export function attentionBias(
  queryPositions: Int32Array,
  pads: readonly number[],
  T: number,
  Tk: number,
  window: number | null,
): tf.Tensor4D {
  const B = pads.length;
  const bias = new Float32Array(B * T * Tk);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const q = queryPositions[b * T + t]!;
      const row = (b * T + t) * Tk;
      for (let k = 0; k < Tk; k++) {
        const key = k - pads[b]!;
        const visible = key >= 0 && key <= q && (window === null || q - key < window);
        if (!visible) bias[row + k] = MASKED;
      }
    }
  }
  return tf.tensor4d(bias, [B, 1, T, Tk]);
}
