// Text generation: greedy, temperature, top-k and top-p (nucleus) sampling,
// seeded so that a run can be repeated. Many prompts decode together, with a
// KV cache (kv-cache.ts), in batches of similar lengths. Any CausalLM.
import { Rng, tf } from '@lorafleet/core';
import type { CausalLM } from './causal-lm.js';
import { type KvCache, decodeStep, prefill } from './kv-cache.js';

export interface SamplingOptions {
  /** 0 means greedy (argmax). */
  temperature: number;
  /** Keep only the k most likely tokens (0: off). */
  topK: number;
  /** Keep the smallest set of tokens whose probability reaches p (1: off). */
  topP: number;
}

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  seed: number;
  /** Stop when this token is produced (it is not included in the output). */
  stopToken?: number;
  /**
   * When a row's context outgrows the context length (n_positions, max_position_embeddings): 'slide' (the default, as
   * generate always did) recomputes each further token from the last
   * n_positions tokens, without a cache, at positions 0..n_positions-1;
   * 'stop' ends the row there (and rejects prompts longer than the context).
   */
  overflow?: ContextOverflow;
}

export type ContextOverflow = 'slide' | 'stop';

export interface GenerateBatchOptions extends GenerateOptions {
  /** Rows decoded together: cache memory grows with it (default 32). */
  batchSize?: number;
}

export const DEFAULT_BATCH_SIZE = 32;

export const DEFAULT_SAMPLING: SamplingOptions = { temperature: 1, topK: 0, topP: 1 };

/** Picks the next token from logits [V]; `uniform` is a draw in [0, 1). */
export function sampleToken(
  logits: Float32Array,
  options: SamplingOptions,
  uniform: number,
): number {
  if (options.temperature <= 0) return argmax(logits);
  let order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!);
  if (options.topK > 0) order = order.slice(0, options.topK);
  const max = logits[order[0]!]!;
  let probs = order.map((i) => Math.exp((logits[i]! - max) / options.temperature));
  let total = probs.reduce((a, b) => a + b, 0);
  if (options.topP < 1) {
    let cumulative = 0;
    let keep = 0;
    while (keep < probs.length && cumulative < options.topP * total) cumulative += probs[keep++]!;
    order = order.slice(0, Math.max(1, keep));
    probs = probs.slice(0, Math.max(1, keep));
    total = probs.reduce((a, b) => a + b, 0);
  }
  let r = uniform * total;
  for (let i = 0; i < order.length; i++) {
    r -= probs[i]!;
    if (r < 0) return order[i]!;
  }
  return order[order.length - 1]!;
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

export function validateSampling(o: SamplingOptions): void {
  if (!(o.temperature >= 0)) throw new Error(`temperature must be >= 0, got ${o.temperature}`);
  if (!Number.isInteger(o.topK) || o.topK < 0)
    throw new Error(`top-k must be an integer >= 0, got ${o.topK}`);
  if (!(o.topP > 0 && o.topP <= 1)) throw new Error(`top-p must be in (0, 1], got ${o.topP}`);
}

/**
 * Continues `prompt` (token ids) by up to maxNewTokens tokens, with a KV
 * cache; the same as generateBatch(model, [prompt], options)[0].
 */
export function generate(
  model: CausalLM,
  prompt: readonly number[],
  options: GenerateOptions,
): number[] {
  return generateBatch(model, [prompt], options)[0]!;
}

/**
 * Continues every prompt by up to maxNewTokens tokens; returns the new tokens
 * per prompt, in the order given. Prompts are sorted by length and decoded
 * batchSize at a time, left-padded within a batch (see kv-cache.ts), so
 * each row's logits are those of running it alone (up to float rounding). A
 * row ends at stopToken, at maxNewTokens, or (overflow 'stop') when its
 * context is full; the others go on. Prompt i samples from its own
 * Rng(seed + i), so its output does not depend on the other prompts or on
 * batchSize, and generate(model, prompt, { seed }) is prompt 0's.
 */
export function generateBatch(
  model: CausalLM,
  prompts: readonly (readonly number[])[],
  options: GenerateBatchOptions,
): number[][] {
  validateSampling(options);
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(options.maxNewTokens) || options.maxNewTokens < 0)
    throw new Error(`maxNewTokens must be an integer >= 0, got ${options.maxNewTokens}`);
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new Error(`batchSize must be an integer >= 1, got ${batchSize}`);
  const P = model.modelConfig.contextLength;
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new Error(`prompt ${i} is empty: give at least one token`);
    if (options.overflow === 'stop' && p.length > P)
      throw new Error(
        `prompt ${i} has ${p.length} tokens, more than the model's context of ${P} (its context length); ` +
          `crop it or use overflow 'slide'`,
      );
  });
  const out = prompts.map((): number[] => []);
  if (options.maxNewTokens === 0) return out;
  // Sorting by length keeps the left padding within a batch small.
  const order = [...prompts.keys()].sort(
    (a, b) => prompts[a]!.length - prompts[b]!.length || a - b,
  );
  for (let s = 0; s < order.length; s += batchSize) {
    const rows = order.slice(s, s + batchSize).map((i): Row => ({
      context: [...prompts[i]!],
      out: out[i]!,
      rng: new Rng(options.seed + i),
    }));
    decodeRows(model, rows, options);
  }
  return out;
}

interface Row {
  /** Prompt and tokens so far. */
  context: number[];
  /** New tokens (the caller's output array). */
  out: number[];
  rng: Rng;
}

/** Decodes one batch: rows that fit the context share a KV cache, the others slide. */
function decodeRows(model: CausalLM, rows: Row[], options: GenerateOptions): void {
  const P = model.modelConfig.contextLength;
  const V = model.modelConfig.vocabSize;
  let cached = rows.filter((r) => r.context.length <= P);
  let sliding = rows.filter((r) => r.context.length > P);
  let cache: KvCache | null = null;
  let last: tf.Tensor2D | null = null; // [cached rows, C]
  /** Takes a sampled token; false when the row is finished. */
  const accept = (row: Row, next: number): boolean => {
    if (next === options.stopToken) return false;
    row.out.push(next);
    row.context.push(next);
    return row.out.length < options.maxNewTokens;
  };
  const sample = (logits: Float32Array, b: number, row: Row) =>
    sampleToken(logits.subarray(b * V, (b + 1) * V), options, row.rng.uniform());
  try {
    if (cached.length > 0) {
      const first = prefill(
        model,
        cached.map((r) => r.context),
      );
      cache = first.cache;
      last = first.last;
    }
    while (cached.length + sliding.length > 0) {
      const cachedLogits = last ? headLogits(model, last) : new Float32Array(0);
      const slidingLogits = sliding.length > 0 ? windowLogits(model, sliding) : null;
      const keep: number[] = [];
      const moved: Row[] = [];
      cached.forEach((row, b) => {
        if (!accept(row, sample(cachedLogits, b, row))) return;
        // The next token would sit at position context.length - 1.
        if (row.context.length <= P) keep.push(b);
        else if (options.overflow !== 'stop') moved.push(row);
      });
      if (slidingLogits)
        sliding = sliding.filter((row, b) => accept(row, sample(slidingLogits, b, row)));
      sliding.push(...moved);
      last?.dispose();
      last = null;
      cached = keep.map((b) => cached[b]!);
      if (cache && cached.length > 0) {
        cache.keepRows(keep);
        last = decodeStep(
          model,
          cache,
          cached.map((r) => r.context[r.context.length - 1]!),
        );
      }
    }
  } finally {
    last?.dispose();
    cache?.dispose();
  }
}

/** hidden [B, C] -> logits [B * V], row-major. */
function headLogits(model: CausalLM, hidden: tf.Tensor2D): Float32Array {
  return tf.tidy(() => model.logits(hidden).dataSync() as Float32Array);
}

/** The next-token logits [B * V] of rows longer than the context, from their last n_positions tokens. */
function windowLogits(model: CausalLM, rows: readonly Row[]): Float32Array {
  const P = model.modelConfig.contextLength;
  const C = model.modelConfig.hiddenSize;
  const ids = new Int32Array(rows.length * P);
  rows.forEach((r, b) => ids.set(r.context.slice(-P), b * P));
  return tf.tidy(() => {
    const h = model.hidden(tf.tensor2d(ids, [rows.length, P], 'int32')); // [B, P, C]
    const lastH = h.slice([0, P - 1, 0], [rows.length, 1, C]).reshape([rows.length, C]); // [B, C]
    return model.logits(lastH as tf.Tensor2D).dataSync() as Float32Array;
  });
}
