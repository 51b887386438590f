// A trained Gemma norm (PEFT's modules_to_save, e.g. model.norm): the model
// applies its stored weight w as the gain 1 + w, so the loss's gradient for w
// must equal the gradient for the gain of the same model written the Llama
// way (stored gain 1 + w, applied as it is). Gemma 3's shape, every kind of
// norm it has: input, q/k, after attention, before and after the MLP, final.
import { describe, expect, it } from 'vitest';
import { tf, useBackend } from '@lorafleet/core';
import {
  type LlamaConfig,
  type TokenBatch,
  LlamaModel,
  randomLlamaWeights,
  tokenNllSum,
} from '../src/index.js';
import { GEMMA3_OVERRIDES, tinyLlamaConfig } from './fixtures/tiny-llama.js';

const GEMMA3: LlamaConfig = tinyLlamaConfig(61, GEMMA3_OVERRIDES);

const BATCH: TokenBatch = {
  ids: Int32Array.from({ length: 2 * 9 }, (_, i) => (i * 7 + 3) % 61),
  labels: Int32Array.from({ length: 2 * 9 }, (_, i) => (i % 4 === 1 ? -100 : (i * 5 + 1) % 61)),
  batchSize: 2,
  seqLen: 9,
};

/** Every norm weight of `m`, in one order for both models. */
function norms(m: LlamaModel): tf.Variable[] {
  const perLayer = m.layers.flatMap((l) => [
    l.inputNorm,
    l.qNorm,
    l.kNorm,
    l.attnOutNorm,
    l.preMlpNorm,
    l.mlpOutNorm,
  ]);
  return [...perLayer, m.norm].filter((v): v is tf.Variable<tf.Rank.R1> => v !== null);
}

/** The loss and its gradient for every norm weight, all of them trained. */
function lossAndNormGrads(m: LlamaModel) {
  const vars = norms(m);
  for (const v of vars) v.trainable = true;
  return tf.tidy(() => {
    const { value, grads } = tf.variableGrads(() => tokenNllSum(m, BATCH), vars);
    return {
      loss: value.dataSync()[0]!,
      grads: vars.map((v) => grads[v.name]!.dataSync().slice()),
    };
  });
}

describe('a trained Gemma norm (1 + weight)', () => {
  it('gets the gradient of the same gain stored the Llama way', async () => {
    await useBackend('cpu');
    const weights = randomLlamaWeights(GEMMA3, 5, 0.3);
    for (const [name, w] of weights) {
      if (name.endsWith('norm.weight'))
        w.data.forEach((v, i) => (w.data[i] = v + Math.sin(i) * 0.3));
    }
    // The twin: gains 1 + w, applied as they are.
    const gains = new Map(
      [...weights].map(([name, w]) => [
        name,
        name.endsWith('norm.weight') ? { ...w, data: w.data.map((v) => 1 + v) } : w,
      ]),
    );
    const gemma = new LlamaModel(GEMMA3, weights);
    const twin = new LlamaModel({ ...GEMMA3, normPlusOne: false }, gains);
    try {
      const a = lossAndNormGrads(gemma);
      const b = lossAndNormGrads(twin);
      expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-5);
      expect(a.grads).toHaveLength(2 * 6 + 1);
      let largest = 0;
      a.grads.forEach((g, k) => {
        for (let i = 0; i < g.length; i++) {
          expect(Math.abs(g[i]! - b.grads[k]![i]!)).toBeLessThan(1e-5);
          largest = Math.max(largest, Math.abs(g[i]!));
        }
      });
      expect(largest).toBeGreaterThan(1e-3); // the norms do get a gradient
    } finally {
      gemma.dispose();
      twin.dispose();
    }
  });
});
