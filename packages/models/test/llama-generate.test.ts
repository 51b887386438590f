// Generation with a KV cache for the Llama family: cached logits (left
// padding, rotary positions per row, grouped-query keys, a sliding window,
// rope scaling) equal those of a full forward pass on each row alone, and
// greedy decoding with the cache equals decoding without it.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type BackendName, tf, useBackend } from '@lorafleet/core';
import {
  type CausalLM,
  addLora,
  buildModel,
  decodeStep,
  generate,
  generateBatch,
  prefill,
} from '../src/index.js';
import { LLAMA_CASES, caseConfig, normals, randomIds, randomWeights } from './llama-fixtures.js';

const GREEDY = { temperature: 0, topK: 0, topP: 1, seed: 0 };

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

/** Next-token logits [V] from a full forward pass over `context`. */
function fullLogits(model: CausalLM, context: readonly number[]): Float32Array {
  const V = model.modelConfig.vocabSize;
  return tf.tidy(() => {
    const logits = model.forward(
      tf.tensor2d(Int32Array.from(context), [1, context.length], 'int32'),
    );
    return logits.slice([0, context.length - 1, 0], [1, 1, V]).dataSync() as Float32Array;
  });
}

/** Greedy decoding without a cache. */
function uncachedGreedy(model: CausalLM, prompt: readonly number[], n: number): number[] {
  const context = [...prompt];
  for (let i = 0; i < n; i++) context.push(argmax(fullLogits(model, context)));
  return context.slice(prompt.length);
}

const BACKENDS: BackendName[] = ['cpu', 'wasm'];

describe.each(BACKENDS)('Llama-family generation with a KV cache on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  describe.each(LLAMA_CASES)('$label', (c) => {
    let model: CausalLM;
    beforeAll(() => {
      const config = caseConfig(c);
      model = buildModel(config, randomWeights(config, c.seed));
    });
    afterAll(() => model.dispose());

    test('cached logits equal full-forward logits within 1e-4 at every step, rows of different lengths', () => {
      const V = model.modelConfig.vocabSize;
      const prompts = randomIds(c.seed + 1, V, 3, 9).map((p, i) => p.slice(0, [9, 2, 6][i]));
      const contexts = prompts.map((p) => [...p]);
      const first = prefill(model, prompts);
      const cache = first.cache;
      let last = first.last;
      let worst = 0;
      for (let step = 0; step < 12; step++) {
        const logits = tf.tidy(() => model.logits(last).dataSync() as Float32Array);
        const next = contexts.map((ctx, b) => {
          const expected = fullLogits(model, ctx);
          for (let v = 0; v < V; v++)
            worst = Math.max(worst, Math.abs(logits[b * V + v]! - expected[v]!));
          return argmax(logits.subarray(b * V, (b + 1) * V));
        });
        next.forEach((t, b) => contexts[b]!.push(t));
        last.dispose();
        last = decodeStep(model, cache, next);
      }
      last.dispose();
      cache.dispose();
      // Up to 21 tokens: past the window of 5 and the llama3 case's original context of 16.
      expect(contexts[0]!.length).toBe(21);
      expect(worst).toBeLessThan(1e-4);
    });

    test('greedy generation with the cache equals greedy decoding without it, also with LoRA', async () => {
      const prompts = randomIds(c.seed + 2, model.modelConfig.vocabSize, 3, 7).map((p, i) =>
        p.slice(0, [7, 1, 4][i]),
      );
      expect(await generateBatch(model, prompts, { ...GREEDY, maxNewTokens: 10 })).toEqual(
        prompts.map((p) => uncachedGreedy(model, p, 10)),
      );
      const layers = await addLora(
        model.linears(),
        'extra',
        { r: 2, alpha: 4, dropout: 0, rslora: false },
        { kind: 'gaussian' },
        c.targets ?? ['q_proj', 'k_proj', 'down_proj'],
        3,
      );
      const randn = normals(c.seed);
      for (const layer of layers) {
        const { b } = layer.activeAdapter!;
        tf.tidy(() =>
          b.assign(
            tf.tensor2d(
              Float32Array.from({ length: b.size }, () => 0.3 * randn()),
              b.shape,
            ),
          ),
        );
      }
      try {
        expect(await generate(model, prompts[0]!, { ...GREEDY, maxNewTokens: 10 })).toEqual(
          uncachedGreedy(model, prompts[0]!, 10),
        );
      } finally {
        for (const layer of layers) layer.deleteAdapter('extra');
      }
    });
  });
});
