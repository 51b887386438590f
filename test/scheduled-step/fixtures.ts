// What the hand-scheduled step's tests share: a tiny GPT-2 and Llama with
// adapters, token batches, and the tape's sums to compare the plan's against.
import { expect } from 'vitest';
import { GradientAccumulator, TrainableParameters } from '@lorafleet/core';
import {
  type CausalLM,
  type Gpt2Config,
  type LlamaConfig,
  type TokenBatch,
  Gpt2Model,
  LlamaModel,
  randomLlamaWeights,
  IGNORE_INDEX,
  ScheduledGradients,
  addLora,
  randomGpt2Weights,
  SFT,
  objectiveOf,
} from '../../packages/models/src/index.js';
import { tinyLlamaConfig } from '../../packages/models/test/fixtures/tiny-llama.js';

export const CONFIG: Gpt2Config = {
  vocabSize: 97,
  nPositions: 24,
  nEmbd: 32,
  nLayer: 2,
  nHead: 4,
  nInner: null,
  layerNormEpsilon: 1e-5,
  embdPdrop: 0,
  attnPdrop: 0,
  residPdrop: 0,
};

export function batch(B: number, T: number, salt = 0): TokenBatch {
  const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3 + salt * 11) % 97);
  const labels = ids.slice();
  labels[0] = IGNORE_INDEX;
  labels[Math.min(5, B * T - 1)] = IGNORE_INDEX;
  return { ids, labels, batchSize: B, seqLen: T };
}

/**
 * Rank-4 adapters (DoRA with `useDora`) on `targets` of `model`, with B not
 * zero (so that dA is not zero either): every parameter set to `fill(i)`.
 */
async function withAdapters<M extends CausalLM>(
  model: M,
  targets: string[] | string,
  dropout: number,
  fill: (i: number) => number,
  useDora: boolean,
) {
  const lora = { r: 4, alpha: 8, dropout, rslora: false, useDora };
  const layers = await addLora(model.linears(), 'default', lora, { kind: 'kaiming' }, targets, 1);
  const params = TrainableParameters.fromLoraLayers(layers);
  params.write(Float32Array.from({ length: params.size }, (_, i) => fill(i)));
  return { model, params };
}

/** A GPT-2 with adapters on `targets`. */
export function loraModel(
  config: Gpt2Config,
  targets: string[] | string,
  dropout = 0,
  useDora = false,
) {
  const model = new Gpt2Model(config, randomGpt2Weights(config, 5));
  return withAdapters(model, targets, dropout, (i) => Math.sin(i * 0.37) * 0.2, useDora);
}

/** A tiny Llama-family model (grouped-query attention: 4 heads over 2) with adapters on `targets`. */
export function loraLlama(
  overrides: Partial<LlamaConfig>,
  targets: string[] | string,
  dropout = 0,
  useDora = false,
) {
  const config = tinyLlamaConfig(61, overrides);
  const weights = randomLlamaWeights(config, 7, 0.3);
  // Norm gains away from their initial 1 (Gemma: 0), so that mishandling them shows.
  for (const [name, w] of weights) {
    if (name.endsWith('norm.weight')) w.data.forEach((v, i) => (w.data[i] = v + Math.sin(i) * 0.3));
  }
  const model = new LlamaModel(config, weights);
  return withAdapters(model, targets, dropout, (i) => Math.cos(i * 0.29) * 0.2, useDora);
}

/** Micro-batch i's seed (its dropout masks): the same on both paths. */
export const seedOf = (i: number) => 1000 + 37 * i;

export async function tapeSums(
  model: CausalLM,
  params: TrainableParameters,
  batches: TokenBatch[],
  neftuneAlpha = 0,
) {
  const sft = objectiveOf(SFT); // the worker's path: the loss, its TOKEN_STATS off the tape
  const acc = new GradientAccumulator(params, sft.stats.length);
  for (const [i, b] of batches.entries()) {
    const pass = { training: true, seed: seedOf(i), ...(neftuneAlpha ? { neftuneAlpha } : {}) };
    const loss = sft.loss(model, b, pass);
    acc.add(
      () => loss.sum(),
      () => loss.stats(),
    );
    loss.dispose();
  }
  return acc.take();
}

export async function scheduledSums(s: ScheduledGradients, batches: TokenBatch[]) {
  for (const [i, b] of batches.entries()) s.add(b, seedOf(i));
  return s.take();
}

/**
 * TRL's token metrics (argmax hits, entropy sums) of two paths: the entropy
 * within 1e-5, the hits within one (a near-tie of logits rounded otherwise).
 */
export function expectTokenStats(got: ArrayLike<number>, want: ArrayLike<number>) {
  expect(got.length).toBe(2);
  expect(Math.abs(got[0]! - want[0]!)).toBeLessThanOrEqual(1);
  expect(want[1]).toBeGreaterThan(0);
  expect(Math.abs(got[1]! - want[1]!) / want[1]!).toBeLessThan(1e-5);
}

export function maxRelDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let [diff, scale] = [0, 0];
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(a[i]!));
  }
  return diff / scale;
}

/**
 * Two micro-batches on both paths: the same loss and gradients, and not all
 * zero; the slots whose names match `eachSlot` are also compared each on its
 * own scale.
 */
export async function expectTapeEquality(
  model: CausalLM,
  params: TrainableParameters,
  batches: TokenBatch[],
  eachSlot?: RegExp,
  neftuneAlpha = 0,
) {
  const s = new ScheduledGradients(model, params, { neftuneAlpha });
  try {
    const want = await tapeSums(model, params, batches, neftuneAlpha);
    const got = await scheduledSums(s, batches);
    expect(Math.abs(got.loss - want.loss) / want.loss).toBeLessThan(1e-6);
    expectTokenStats(got.stats, want.stats);
    expect(maxRelDiff(want.grads, got.grads)).toBeLessThan(1e-5);
    expect(got.grads.some((g) => g !== 0)).toBe(true);
    const slots = params.slots.filter((slot) => eachSlot?.test(slot.name));
    for (const { name, offset, size } of slots) {
      const [w, g] = [want, got].map((r) => r.grads.subarray(offset, offset + size));
      expect(maxRelDiff(w!, g!), name).toBeLessThan(1e-5);
      expect(
        g!.some((v) => v !== 0),
        name,
      ).toBe(true);
    }
    if (eachSlot) expect(slots.length).toBeGreaterThan(0);
  } finally {
    s.dispose();
  }
}

/** A batch over the tiny Llama's 61-word vocabulary. */
export function llamaBatch(B: number, T: number, salt = 0): TokenBatch {
  const b = batch(B, T, salt);
  return { ...b, ids: b.ids.map((v) => v % 61), labels: b.labels.map((v) => (v < 0 ? v : v % 61)) };
}
