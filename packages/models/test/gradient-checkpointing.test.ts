// Gradient checkpointing (ForwardPassOptions.gradientCheckpointing, core's
// checkpoint) through whole models: with every dropout on, LoRA on every
// linear layer, the loss and gradients equal the plain tape's bit for bit,
// for GPT-2 and every Llama-family case (sliding windows, two rope bases,
// fused projections, sandwich norms, norms absent), for DoRA, and for a full
// fine-tune (norms, biases and W differentiated through the recomputation).
// Nothing leaks; an eval pass is not affected.
import {
  DEFAULT_LORA,
  type LoraSettings,
  TrainableParameters,
  tf,
  useBackend,
} from '@lorafleet/core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type CausalLM,
  type TokenBatch,
  addLora,
  buildModel,
  modelConfigFromJson,
  randomModelWeights,
  tokenNllSum,
} from '../src/index.js';
import { LLAMA_CASES, caseConfig, randomIds, randomWeights } from './llama-fixtures.js';

const LORA: LoraSettings = { ...DEFAULT_LORA, r: 4, dropout: 0.1 };
const GPT2 = {
  model_type: 'gpt2',
  vocab_size: 50,
  n_positions: 16,
  n_embd: 16,
  n_layer: 3,
  n_head: 2,
  resid_pdrop: 0.1,
  embd_pdrop: 0.1,
  attn_pdrop: 0.1,
};

beforeAll(async () => {
  await useBackend('wasm');
});

function batchOf(vocab: number, B: number, T: number, seed: number): TokenBatch {
  const ids = Int32Array.from(randomIds(seed, vocab, B, T).flat());
  return { ids, labels: ids.slice(), batchSize: B, seqLen: T };
}

/** The loss and fused gradient of one training pass, with or without checkpointing. */
function lossAndGrads(
  model: CausalLM,
  params: TrainableParameters,
  batch: TokenBatch,
  on: boolean,
) {
  const before = tf.memory().numTensors;
  const out = params.lossAndGrads(() =>
    tokenNllSum(model, batch, { training: true, seed: 11, gradientCheckpointing: on }),
  );
  expect(tf.memory().numTensors, 'tensors left after the pass').toBe(before);
  return out;
}

async function expectSameGradients(
  model: CausalLM,
  params: TrainableParameters,
  batch: TokenBatch,
): Promise<void> {
  const plain = lossAndGrads(model, params, batch, false);
  const checkpointed = lossAndGrads(model, params, batch, true);
  expect(checkpointed.loss).toBe(plain.loss);
  expect(checkpointed.grads).toEqual(plain.grads);
  expect(plain.grads.some((g) => g !== 0)).toBe(true);
  // Eval passes ignore the option.
  const ids = tf.tensor2d(batch.ids, [batch.batchSize, batch.seqLen], 'int32');
  const [a, b] = [model.hidden(ids), model.hidden(ids, { gradientCheckpointing: true })];
  expect(await b.data()).toEqual(await a.data());
  tf.dispose([ids, a, b]);
}

describe('gradient checkpointing gives the tape its gradients bit for bit', () => {
  it('gpt2 with every dropout on, LoRA on every linear layer', async () => {
    const config = modelConfigFromJson(GPT2, 'gpt2');
    const model = buildModel(config, randomModelWeights(config, 3));
    const layers = await addLora(
      model.linears(),
      'default',
      LORA,
      { kind: 'kaiming' },
      'all-linear',
      5,
    );
    // B starts at zero: give it values so that every factor gets a gradient of its own.
    for (const l of layers)
      l.activeAdapter!.b.assign(tf.randomNormal(l.activeAdapter!.b.shape, 0, 0.1, 'float32', 9));
    await expectSameGradients(
      model,
      TrainableParameters.fromLoraLayers(layers),
      batchOf(50, 2, 12, 1),
    );
    model.dispose();
  });

  it('gpt2, full fine-tune: norms, biases and W differentiated through the recomputation', async () => {
    const config = modelConfigFromJson(GPT2, 'gpt2');
    const model = buildModel(config, randomModelWeights(config, 4));
    const params = new TrainableParameters(model.namedWeights());
    await expectSameGradients(model, params, batchOf(50, 2, 12, 2));
    model.dispose();
  });

  for (const c of LLAMA_CASES) {
    it(`${c.label}, attention and LoRA dropout${c.seed % 2 ? ', DoRA' : ''}`, async () => {
      const config = caseConfig({ ...c, json: { ...c.json, attention_dropout: 0.1 } });
      const model = buildModel(config, randomWeights(config, c.seed));
      const settings = { ...LORA, useDora: c.seed % 2 === 1 };
      const layers = await addLora(
        model.linears(),
        'default',
        settings,
        { kind: 'kaiming' },
        'all-linear',
        5,
      );
      for (const l of layers)
        l.activeAdapter!.b.assign(tf.randomNormal(l.activeAdapter!.b.shape, 0, 0.1, 'float32', 9));
      await expectSameGradients(
        model,
        TrainableParameters.fromLoraLayers(layers),
        batchOf(config.vocabSize, 2, 12, c.seed),
      );
      model.dispose();
    });
  }
});
