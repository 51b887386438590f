// A model's dispose() gives back every tensor it made: its weights, and the
// LoRA adapters added to its linear and embedding layers (each variable is
// made from a tensor that must go once the variable holds the data).
import { DEFAULT_LORA, tf, useBackend } from '@lorafleet/core';
import { beforeAll, describe, expect, test } from 'vitest';
import { addLora, buildModel, modelConfigFromJson, randomModelWeights } from '../src/index.js';

const CONFIGS = {
  gpt2: { model_type: 'gpt2', vocab_size: 40, n_positions: 16, n_embd: 8, n_layer: 2, n_head: 2 },
  llama: {
    model_type: 'llama',
    vocab_size: 40,
    hidden_size: 8,
    intermediate_size: 12,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    num_key_value_heads: 1,
  },
};

describe('dispose() frees every tensor the model made', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  for (const [family, json] of Object.entries(CONFIGS)) {
    test(`${family}: weights, linear and embedding adapters`, async () => {
      const before = tf.memory().numTensors;
      const config = modelConfigFromJson(json, family);
      const model = buildModel(config, randomModelWeights(config, 1));
      const made = tf.memory().numTensors;
      expect(made).toBeGreaterThan(before); // not vacuous
      await addLora(model.linears(), 'default', DEFAULT_LORA, { kind: 'kaiming' }, 'all-linear', 2);
      for (const e of model.embeddings()) e.addAdapter('default', DEFAULT_LORA, 3);
      expect(tf.memory().numTensors).toBeGreaterThan(made);
      model.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});
