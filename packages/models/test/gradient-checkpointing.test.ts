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
  softmaxCrossEntropy,
  tf,
  useBackend,
} from '@lorafleet/core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type CausalLM,
  IGNORE_INDEX,
  type TokenBatch,
  buildModel,
  chunkedNllSum,
  modelConfigFromJson,
  randomModelWeights,
  shiftedLabels,
  tokenNllSum,
} from '../src/index.js';
import {
  LLAMA_CASES,
  caseConfig,
  loraEverywhere,
  randomIds,
  randomWeights,
} from './llama-fixtures.js';

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
    const params = await loraEverywhere(model, LORA);
    await expectSameGradients(model, params, batchOf(50, 2, 12, 1));
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
      const params = await loraEverywhere(model, { ...LORA, useDora: c.seed % 2 === 1 });
      await expectSameGradients(model, params, batchOf(config.vocabSize, 2, 12, c.seed));
      model.dispose();
    });
  }
});

describe('the checkpointed loss over chunks of positions', () => {
  const maxRelDiff = (a: Float32Array, b: Float32Array) => {
    let [diff, scale] = [0, 0];
    for (let i = 0; i < a.length; i++) {
      diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
      scale = Math.max(scale, Math.abs(b[i]!));
    }
    return diff / scale;
  };
  const cases = [
    { label: 'gpt2 (head tied to wte)', json: GPT2, family: 'gpt2' },
    {
      label: LLAMA_CASES[0]!.label + ' (untied head)',
      json: LLAMA_CASES[0]!.json,
      family: 'llama',
    },
  ];
  for (const c of cases) {
    it(`${c.label}, full fine-tune: chunks of 5 positions give the whole loss and gradients`, async () => {
      const config = modelConfigFromJson(c.json, c.family);
      const model = buildModel(config, randomModelWeights(config, 6));
      const params = new TrainableParameters(model.namedWeights()); // the head is trained too
      const batch = batchOf(config.vocabSize, 2, 12, 3);
      batch.labels.fill(IGNORE_INDEX, 0, 9); // the first chunk has nothing to learn: skipped
      const pass = { training: true, seed: 4, gradientCheckpointing: true };
      const whole = params.lossAndGrads(() =>
        tokenNllSum(model, batch, { training: true, seed: 4 }),
      );
      const before = tf.memory().numTensors;
      const chunked = params.lossAndGrads(() => chunkedNllSum(model, batch, pass, 5));
      expect(tf.memory().numTensors).toBe(before);
      expect(Math.abs(chunked.loss - whole.loss) / whole.loss).toBeLessThan(1e-6);
      expect(maxRelDiff(chunked.grads, whole.grads)).toBeLessThan(1e-5);
      const head = params.slots.find((s) => s.variable === model.headVariables()[0])!;
      const headGrad = chunked.grads.subarray(head.offset, head.offset + head.size);
      expect(headGrad.some((g) => g !== 0)).toBe(true); // the head's gradient went through the chunks
      model.dispose();
    });
  }
});

describe('evaluation over chunks of logits', () => {
  it('a big vocabulary: the loss of the whole batch, without its [B*T, V] logits at once', async () => {
    // 8 x 64 positions of 40000 logits: past 2^22, so tokenNllSum takes chunks of 104 positions.
    const json = { ...GPT2, vocab_size: 40000, n_positions: 64, n_layer: 1 };
    const config = modelConfigFromJson(json, 'gpt2');
    const model = buildModel(config, randomModelWeights(config, 7));
    const batch = batchOf(40000, 8, 64, 5);
    const whole = tf.tidy(() => {
      const ids = tf.tensor2d(batch.ids, [8, 64], 'int32');
      const logits = model.forward(ids).reshape([512, 40000]) as tf.Tensor2D;
      const labels = tf.tensor1d(shiftedLabels(batch, 40000), 'int32');
      return tf.sum(softmaxCrossEntropy(logits, labels)).dataSync()[0]!;
    });
    let chunked = 0;
    const { peakBytes } = await tf.profile(() => {
      chunked = tf.tidy(() => tokenNllSum(model, batch).dataSync()[0]!);
    });
    expect(Math.abs(chunked - whole) / whole).toBeLessThan(1e-6);
    expect(peakBytes).toBeLessThan(0.5 * 512 * 40000 * 4); // never all the logits
    model.dispose();
  });
});
