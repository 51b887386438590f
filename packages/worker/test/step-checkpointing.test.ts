// TrainingStep with gradientCheckpointing (--gradient-checkpointing): the
// same update bit for bit as without, and a smaller peak of tensor bytes
// while the step runs (tf.profile), on a 4-layer GPT-2 on wasm.
import { tf, useBackend } from '@lorafleet/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { loraStep } from './helpers.js';

const CONFIG = {
  model_type: 'gpt2',
  vocab_size: 64,
  n_positions: 64,
  n_embd: 32,
  n_layer: 4,
  n_head: 2,
};

beforeAll(async () => {
  await useBackend('wasm');
});

async function oneStep(gradientCheckpointing: boolean) {
  const { model, params, step } = await loraStep(CONFIG, {
    dropout: 0.1,
    step: { gradientCheckpointing },
  });
  const ids = Int32Array.from({ length: 8 * 48 }, (_, i) => (i * 37 + 5) % 64);
  const batch = { ids, labels: ids.slice(), batchSize: 8, seqLen: 48 };
  let loss = 0;
  const { peakBytes } = await tf.profile(async () => {
    loss = (await step.run([batch])).loss;
  });
  const values = params.read();
  expect(step.recomputesLayers).toBe(gradientCheckpointing);
  step.dispose();
  model.dispose();
  return { loss, values, peakBytes };
}

describe('TrainingStep with gradient checkpointing', () => {
  it('updates the parameters bit for bit as without, holding fewer bytes at its peak', async () => {
    const plain = await oneStep(false);
    const checkpointed = await oneStep(true);
    expect(checkpointed.loss).toBe(plain.loss);
    expect(checkpointed.values).toEqual(plain.values);
    // 4 layers' intermediates against 1 layer's and 4 inputs: well under 0.6x.
    expect(checkpointed.peakBytes).toBeLessThan(0.6 * plain.peakBytes);
  });
});
