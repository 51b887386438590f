// Text generation: greedy, temperature, top-k and top-p (nucleus) sampling,
// seeded so that a run can be repeated.
import { Rng, tf } from '@lorafleet/core';
import type { Gpt2Model } from './gpt2/model.js';

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
}

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
 * Continues `prompt` (token ids) by up to maxNewTokens tokens. Recomputes the
 * whole window each step (no KV cache yet), cropped to the model's context.
 */
export function generate(
  model: Gpt2Model,
  prompt: readonly number[],
  options: GenerateOptions,
): number[] {
  validateSampling(options);
  if (prompt.length === 0) throw new Error('the prompt is empty: give at least one token');
  const rng = new Rng(options.seed);
  const context = [...prompt];
  const out: number[] = [];
  const P = model.config.nPositions;
  for (let i = 0; i < options.maxNewTokens; i++) {
    const window = context.slice(-P);
    const logits = tf.tidy(() => {
      const ids = tf.tensor2d(Int32Array.from(window), [1, window.length], 'int32');
      const h = model.hidden(ids); // [1, T, C]
      const last = h
        .slice([0, window.length - 1, 0], [1, 1, model.config.nEmbd])
        .reshape([1, model.config.nEmbd]);
      return tf.matMul(last, model.wte, false, true).dataSync() as Float32Array; // [V]
    });
    const next = sampleToken(logits, options, rng.uniform());
    if (next === options.stopToken) break;
    out.push(next);
    context.push(next);
  }
  return out;
}
