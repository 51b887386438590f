// NEFTune (--neftune-noise-alpha): the noise is uniform within
// alpha / sqrt(T * C), the same for the same seed on every backend, and a
// training pass only: GPT-2 and a Llama (Gemma's scaled embeddings too)
// change with it while training and not at all in eval.
import { Rng, tf, useBackend } from '@lorafleet/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildModel, modelConfigFromJson, randomModelWeights } from '../src/index.js';
import { neftuneNoise } from '../src/neftune.js';

const CONFIGS = {
  gpt2: { model_type: 'gpt2', vocab_size: 40, n_positions: 16, n_embd: 16, n_layer: 1, n_head: 2 },
  gemma: {
    model_type: 'gemma',
    vocab_size: 40,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    head_dim: 8,
  },
};

beforeAll(async () => {
  await useBackend('wasm');
});

describe('NEFTune', () => {
  it('adds uniform noise within alpha / sqrt(T * C), the same for the same seed', async () => {
    const [B, T, C] = [2, 8, 16];
    const rng = new Rng(1);
    const x = tf.tensor3d(
      Float32Array.from({ length: B * T * C }, () => rng.normal()),
      [B, T, C],
    );
    const m = 5 / Math.sqrt(T * C);
    const noise = async (seed: number) => {
      const y = neftuneNoise(x, 5, seed);
      const d = (await tf.sub(y, x).data()) as Float32Array;
      y.dispose();
      return d;
    };
    const [a, again, other] = [await noise(3), await noise(3), await noise(4)];
    expect(a).toEqual(again);
    expect(a).not.toEqual(other);
    const max = a.reduce((s, v) => Math.max(s, Math.abs(v)), 0);
    expect(max).toBeLessThanOrEqual(m * (1 + 1e-6));
    expect(max).toBeGreaterThan(0.95 * m); // 256 uniform draws reach near the bound
    expect(Math.abs(a.reduce((s, v) => s + v, 0) / a.length)).toBeLessThan(0.15 * m);
    x.dispose();
  });

  for (const [family, json] of Object.entries(CONFIGS)) {
    it(`${family}: changes a training pass, not an eval pass`, async () => {
      const config = modelConfigFromJson(json, family);
      const model = buildModel(config, randomModelWeights(config, 2));
      const ids = tf.tensor2d([[1, 5, 9, 2, 7, 3, 30, 11]], undefined, 'int32');
      const run = async (options: object) => {
        const out = model.hidden(ids, options);
        const values = (await out.data()) as Float32Array;
        out.dispose();
        return values;
      };
      const plain = await run({ training: true, seed: 7 });
      const noisy = await run({ training: true, seed: 7, neftuneAlpha: 5 });
      expect(noisy).not.toEqual(plain);
      expect(await run({ training: true, seed: 7, neftuneAlpha: 5 })).toEqual(noisy);
      expect(await run({ training: false, seed: 7, neftuneAlpha: 5 })).toEqual(
        await run({ training: false, seed: 7 }),
      );
      ids.dispose();
      model.dispose();
    });
  }
});
