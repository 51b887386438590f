// TRL's SFT metrics beside the token loss (loss.ts tokenLossAndStats, the
// sft objective's stats): on a GPT-2 and a Llama with LoRA, the argmax hits
// and summed entropy of the labelled positions equal a float64 statement of
// TRL's computation over the model's own logits (shifted labels, -100
// ignored); the chunked loss (evaluation of a large batch, training with
// gradient checkpointing) sums the same; and carrying the metrics leaves the
// loss's gradient as it is without them, bit for bit.
import { DEFAULT_LORA, TrainableParameters, tf, useBackend } from '@lorafleet/core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type CausalLM,
  IGNORE_INDEX,
  type TokenBatch,
  addLora,
  buildModel,
  modelConfigFromJson,
  randomModelWeights,
  tokenLossAndStats,
  tokenNllSum,
} from '../src/index.js';
import { LLAMA_CASES, caseConfig, randomIds, randomWeights } from './llama-fixtures.js';

beforeAll(async () => {
  await useBackend('wasm');
});

const GPT2 = {
  model_type: 'gpt2',
  vocab_size: 61,
  n_positions: 16,
  n_embd: 16,
  n_layer: 2,
  n_head: 2,
};

/** B x T ids; labels = ids with every 5th position ignored (a prompt's or padding's). */
function batchOf(vocab: number, B: number, T: number, seed: number): TokenBatch {
  const ids = Int32Array.from(randomIds(seed, vocab, B, T).flat());
  const labels = ids.map((id, i) => (i % 5 === 2 ? IGNORE_INDEX : id));
  return { ids, labels, batchSize: B, seqLen: T };
}

function logitsOf(model: CausalLM, b: TokenBatch): Float32Array {
  const shape: [number, number] = [b.batchSize, b.seqLen];
  return tf.tidy(
    () => model.forward(tf.tensor2d(b.ids, shape, 'int32')).dataSync() as Float32Array,
  );
}

/** Every third labelled position's label set to the model's prediction there, so that hits occur. */
function somePredicted(model: CausalLM, b: TokenBatch): TokenBatch {
  const V = model.modelConfig.vocabSize;
  const logits = logitsOf(model, b);
  const labels = b.labels.slice();
  for (let p = 0; p + 1 < labels.length; p += 3) {
    if ((p + 1) % b.seqLen === 0 || labels[p + 1] === IGNORE_INDEX) continue;
    const row = Array.from(logits.subarray(p * V, (p + 1) * V));
    labels[p + 1] = row.indexOf(Math.max(...row));
  }
  return { ...b, labels };
}

/** TRL's metrics in float64 from the logits: [argmax hits, summed entropy] over labelled positions. */
function reference(model: CausalLM, b: TokenBatch): [number, number] {
  const V = model.modelConfig.vocabSize;
  const logits = logitsOf(model, b);
  let [hits, entropy] = [0, 0];
  for (let r = 0; r < b.batchSize; r++) {
    for (let t = 0; t + 1 < b.seqLen; t++) {
      const label = b.labels[r * b.seqLen + t + 1]!;
      if (label === IGNORE_INDEX) continue;
      const row = Array.from(logits.subarray((r * b.seqLen + t) * V, (r * b.seqLen + t + 1) * V));
      const max = Math.max(...row);
      const lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
      entropy -= row.reduce((s, x) => s + Math.exp(x - lse) * (x - lse), 0);
      hits += row.indexOf(max) === label ? 1 : 0;
    }
  }
  return [hits, entropy];
}

/** LoRA on every linear layer, B given values (it starts at zero), so the adapter shapes the logits. */
async function withLora(model: CausalLM) {
  const layers = await addLora(
    model.linears(),
    'default',
    { ...DEFAULT_LORA, r: 2 },
    { kind: 'kaiming' },
    'all-linear',
    5,
  );
  for (const l of layers) {
    const b = l.activeAdapter!.b;
    b.assign(tf.randomNormal(b.shape, 0, 0.1, 'float32', 9));
  }
  return { model, params: TrainableParameters.fromLoraLayers(layers) };
}

const MODELS = {
  gpt2: () => {
    const config = modelConfigFromJson(GPT2, 'gpt2');
    return withLora(buildModel(config, randomModelWeights(config, 3)));
  },
  llama: () => {
    const config = caseConfig(LLAMA_CASES[0]!);
    return withLora(buildModel(config, randomWeights(config, 6)));
  },
};

describe("tokenLossAndStats: TRL's mean_token_accuracy and entropy numerators", () => {
  it.each(Object.keys(MODELS) as (keyof typeof MODELS)[])(
    '%s: equal float64 from the logits, whole and in chunks; the gradient is unchanged',
    async (name) => {
      const { model, params } = await MODELS[name]();
      const V = model.modelConfig.vocabSize;
      const b = somePredicted(model, batchOf(V, 3, 12, 8));
      const [hits, entropy] = reference(model, b);
      expect(hits).toBeGreaterThan(5);
      const read = (options = {}) =>
        tf.tidy(() => {
          const { sum, stats } = tokenLossAndStats(model, b, options);
          return [sum.dataSync()[0]!, ...stats.dataSync()];
        });
      const whole = read();
      // Training with gradient checkpointing takes the chunked loss.
      const chunked = read({ training: true, gradientCheckpointing: true, dropout: false });
      for (const got of [whole, chunked]) {
        expect(got[1]).toBe(hits);
        expect(Math.abs(got[2]! - entropy) / entropy).toBeLessThan(1e-5);
      }
      expect(entropy).toBeGreaterThan(0);
      expect(Math.abs(chunked[0]! - whole[0]!) / whole[0]!).toBeLessThan(1e-6);
      for (const gradientCheckpointing of [false, true]) {
        const pass = { training: true, gradientCheckpointing, dropout: false };
        const plain = params.lossAndGrads(() => tokenNllSum(model, b, pass));
        const beside = params.lossAndGrads(() => tokenLossAndStats(model, b, pass).sum);
        expect(beside.loss).toBe(plain.loss);
        expect(Array.from(beside.grads)).toEqual(Array.from(plain.grads));
      }
      model.dispose();
    },
  );
});
