// Generation with a KV cache, batched over prompts of different lengths,
// against a plain reference: a full forward over the growing sequence
// (cropped to the last n_positions tokens), argmax of the last logits.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type BackendName, Rng, tf, useBackend } from '@lorafleet/core';
import {
  type Gpt2Config,
  type GenerateBatchOptions,
  Gpt2Model,
  addLora,
  decodeStep,
  generate,
  generateBatch,
  prefill,
  randomGpt2Weights,
} from '../src/index.js';
import { tinyGpt2Config } from './fixtures/tiny-gpt2.js';

const CONFIG: Gpt2Config = tinyGpt2Config({ nPositions: 64 });

const GREEDY: GenerateBatchOptions = {
  temperature: 0,
  topK: 0,
  topP: 1,
  maxNewTokens: 12,
  seed: 0,
};

/** std 0.2 (not 0.02): attention far from uniform and logits spread, so a wrong position or mask shows. */
function makeModel(seed = 7): Gpt2Model {
  return new Gpt2Model(CONFIG, randomGpt2Weights(CONFIG, seed, 0.2));
}

function randomPrompt(rng: Rng, length: number): number[] {
  return Array.from({ length }, () => Math.floor(rng.uniform() * CONFIG.vocabSize));
}

/** Next-token logits [V] from a full forward over the last n_positions tokens. */
function fullLogits(model: Gpt2Model, context: readonly number[]): Float32Array {
  const window = context.slice(-model.config.nPositions);
  return tf.tidy(() => {
    const ids = tf.tensor2d(Int32Array.from(window), [1, window.length], 'int32');
    const logits = model.forward(ids); // [1, T, V]
    const V = model.config.vocabSize;
    return logits.slice([0, window.length - 1, 0], [1, 1, V]).dataSync() as Float32Array;
  });
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

/** Greedy decoding without a cache: the behaviour generate() had before. */
function referenceGreedy(
  model: Gpt2Model,
  prompt: readonly number[],
  maxNewTokens: number,
  stopToken?: number,
): number[] {
  const context = [...prompt];
  const out: number[] = [];
  for (let i = 0; i < maxNewTokens; i++) {
    const next = argmax(fullLogits(model, context));
    if (next === stopToken) break;
    out.push(next);
    context.push(next);
  }
  return out;
}

function useTiny(backend: BackendName): { model: () => Gpt2Model } {
  let model: Gpt2Model | null = null;
  beforeAll(async () => {
    await useBackend(backend);
    model = makeModel();
  });
  afterAll(() => model?.dispose());
  return { model: () => model! };
}

describe('generation with a KV cache on wasm', () => {
  const tiny = useTiny('wasm');
  const rng = new Rng(11);
  const prompts = [1, 2, 5, 9, 17, 30].map((n) => randomPrompt(rng, n));

  test('greedy tokens equal full-forward greedy tokens, prompt by prompt', () => {
    const model = tiny.model();
    for (const prompt of prompts) {
      const expected = referenceGreedy(model, prompt, 16);
      expect(generate(model, prompt, { ...GREEDY, maxNewTokens: 16 })).toEqual(expected);
    }
  });

  test('greedy tokens equal full-forward greedy tokens with a LoRA adapter active', () => {
    const model = makeModel(8);
    const base = prompts.map((p) => referenceGreedy(model, p, 10));
    const layers = addLora(
      model.linears(),
      'a',
      { r: 4, alpha: 8, dropout: 0, rslora: false },
      { kind: 'gaussian' },
      ['c_attn', 'c_proj'],
      1,
    );
    const values = new Rng(5);
    for (const layer of layers) {
      const b = layer.activeAdapter!.b;
      const data = Float32Array.from({ length: b.size }, () => values.normal() * 0.5);
      tf.tidy(() => b.assign(tf.tensor2d(data, b.shape)));
    }
    const expected = prompts.map((p) => referenceGreedy(model, p, 10));
    // The adapter must change the output, or this test would not see it ignored.
    expect(expected).not.toEqual(base);
    expect(generateBatch(model, prompts, { ...GREEDY, maxNewTokens: 10 })).toEqual(expected);
    model.dispose();
  });

  test('cached last-position logits equal full-forward logits within 1e-4 at every step', () => {
    const model = tiny.model();
    const batch = [prompts[4]!, prompts[0]!, prompts[2]!]; // lengths 17, 1, 5: left padding
    const contexts = batch.map((p) => [...p]);
    const headLogits = (h: tf.Tensor2D) =>
      tf.tidy(() => tf.matMul(h, model.wte, false, true).dataSync() as Float32Array);
    const V = CONFIG.vocabSize;
    let { cache, last } = prefill(model, batch);
    let worst = 0;
    for (let step = 0; step < 20; step++) {
      const logits = headLogits(last);
      last.dispose();
      const next = contexts.map((context, b) => {
        const cached = logits.subarray(b * V, (b + 1) * V);
        const full = fullLogits(model, context);
        for (let i = 0; i < V; i++) worst = Math.max(worst, Math.abs(cached[i]! - full[i]!));
        return argmax(full);
      });
      next.forEach((t, b) => contexts[b]!.push(t));
      last = decodeStep(model, cache, next);
    }
    last.dispose();
    cache.dispose();
    expect(worst).toBeLessThan(1e-4);
    expect(worst).toBeGreaterThanOrEqual(0);
    ({ cache, last } = prefill(model, [prompts[1]!]));
    expect(cache.positions).toEqual([2]);
    expect(cache.layers[0]!.keys.shape).toEqual([1, CONFIG.nHead, 2, CONFIG.nEmbd / CONFIG.nHead]);
    last.dispose();
    cache.dispose();
  });

  test('batched greedy generation over different lengths equals generating each alone', () => {
    const model = tiny.model();
    const alone = prompts.map((p) => referenceGreedy(model, p, 14));
    // A stop token that ends one row early while the others go on.
    const stopToken = alone[3]![4]!;
    const expected = prompts.map((p) => referenceGreedy(model, p, 14, stopToken));
    expect(expected[3]!.length).toBeLessThanOrEqual(4);
    expect(Math.max(...expected.map((e) => e.length))).toBe(14);
    const shuffled = [3, 0, 5, 1, 4, 2];
    for (const batchSize of [1, 4, 32]) {
      const got = generateBatch(
        model,
        shuffled.map((i) => prompts[i]!),
        { ...GREEDY, maxNewTokens: 14, stopToken, batchSize },
      );
      expect(got).toEqual(shuffled.map((i) => expected[i]!));
    }
  });

  test('a row that outgrows n_positions slides (the default) or stops', () => {
    const model = tiny.model();
    const P = CONFIG.nPositions;
    const local = new Rng(3);
    const batch = [randomPrompt(local, P - 4), randomPrompt(local, 3), randomPrompt(local, P + 5)];
    const expected = batch.map((p) => referenceGreedy(model, p, 10));
    expect(generateBatch(model, batch, { ...GREEDY, maxNewTokens: 10 })).toEqual(expected);
    // Prompt of L tokens: the last cached token sits at position P - 1, so L + n <= P + 1.
    const stopped = generateBatch(model, batch.slice(0, 2), {
      ...GREEDY,
      maxNewTokens: 10,
      overflow: 'stop',
    });
    expect(stopped).toEqual([expected[0]!.slice(0, 5), expected[1]!]);
    expect(() => generateBatch(model, batch, { ...GREEDY, overflow: 'stop' })).toThrow(
      /prompt 2 has 69 tokens, more than the model's context of 64/,
    );
  });

  test('sampling is reproducible for a seed, differs across seeds, and top-k 1 is greedy', () => {
    const model = tiny.model();
    const sampling = { ...GREEDY, temperature: 1, maxNewTokens: 20, seed: 42 };
    const first = generateBatch(model, prompts, sampling);
    expect(generateBatch(model, prompts, { ...sampling, batchSize: 2 })).toEqual(first);
    const other = generateBatch(model, prompts, { ...sampling, seed: 43 });
    expect(other).not.toEqual(first);
    // Prompt i samples from Rng(seed + i), whatever else is in the batch.
    expect(generate(model, prompts[2]!, { ...sampling, seed: 44 })).toEqual(first[2]);
    const topOne = generateBatch(model, prompts, { ...sampling, topK: 1 });
    expect(topOne).toEqual(generateBatch(model, prompts, { ...GREEDY, maxNewTokens: 20 }));
  });

  test('leaks no tensors across a generation', () => {
    const model = tiny.model();
    const long = randomPrompt(new Rng(4), CONFIG.nPositions - 2);
    const run = () =>
      generateBatch(model, [...prompts, long], {
        ...GREEDY,
        temperature: 0.8,
        topP: 0.9,
        maxNewTokens: 8,
        stopToken: 5,
        batchSize: 3,
      });
    run(); // warm-up: a backend may keep tensors of its own on first use
    const before = tf.memory().numTensors;
    run();
    expect(tf.memory().numTensors).toBe(before);
  });

  test('rejects empty prompts and bad options, naming the culprit', () => {
    const model = tiny.model();
    expect(() => generateBatch(model, [[1], []], GREEDY)).toThrow(/prompt 1 is empty/);
    expect(() => generateBatch(model, [[1]], { ...GREEDY, batchSize: 0 })).toThrow(/batchSize/);
    expect(generateBatch(model, [[1], [2, 3]], { ...GREEDY, maxNewTokens: 0 })).toEqual([[], []]);
    expect(generateBatch(model, [], GREEDY)).toEqual([]);
  });
});

describe('generation with a KV cache on cpu', () => {
  const tiny = useTiny('cpu');

  test('batched greedy generation equals full-forward greedy, prompt by prompt', () => {
    const model = tiny.model();
    const rng = new Rng(12);
    const prompts = [4, 1, 13, 62].map((n) => randomPrompt(rng, n));
    const expected = prompts.map((p) => referenceGreedy(model, p, 6));
    const before = tf.memory().numTensors;
    expect(generateBatch(model, prompts, { ...GREEDY, maxNewTokens: 6 })).toEqual(expected);
    expect(tf.memory().numTensors).toBe(before);
  });
});
