// Rows that pack documents apart (ForwardPassOptions.positionIds, data's
// best-fit packing): for GPT-2 and every Llama-family case (sliding windows
// shorter than a document, Gemma 2's soft caps, Gemma 3's two rope bases,
// Phi-3's fused projections, SmolLM3's unrotated layers, ...), each
// document's logits in a packed row equal its logits alone, and the packed
// batch's loss and LoRA gradients equal the sums over its documents alone,
// with and without gradient checkpointing. The one-document path is the
// reference: transformers parity covers it (llama-parity, gpt2-parity).
import type { TrainableParameters } from '@lorafleet/core';
import { DEFAULT_LORA, tf, useBackend } from '@lorafleet/core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type CausalLM,
  IGNORE_INDEX,
  type TokenBatch,
  buildModel,
  checkPositionIds,
  modelConfigFromJson,
  randomModelWeights,
  tokenNllSum,
} from '../src/index.js';
import {
  LLAMA_CASES,
  caseConfig,
  loraEverywhere,
  maxAbsDiff,
  randomIds,
  randomWeights,
} from './llama-fixtures.js';

const T = 16;
/** Two rows of documents: 5 + 7 + 3 tokens and 9 + 6, each row ending in one padding token. */
const ROWS = [
  [5, 7, 3],
  [9, 6],
];
/**
 * Phi-3's LongRoPE past its original context (8): a row's longest position
 * picks its factors (transformers': the largest position id), so a document
 * of 6 beside one of 9 rotates with the long factors and alone with the
 * short: here the long one has its row to itself.
 */
const LONGROPE_ROWS = [[5, 7, 3], [9]];
const GPT2 = {
  model_type: 'gpt2',
  vocab_size: 50,
  n_positions: 16,
  n_embd: 16,
  n_layer: 2,
  n_head: 2,
};

beforeAll(async () => {
  await useBackend('wasm');
});

/** The packed batch [2, T] of random documents, and each document alone as a batch [1, n]. */
function documents(
  rows: number[][],
  vocab: number,
  seed: number,
): { packed: TokenBatch; alone: TokenBatch[] } {
  const ids = Int32Array.from(randomIds(seed, vocab, rows.length, T).flat());
  const labels = ids.slice();
  const positionIds = new Int32Array(rows.length * T);
  const alone: TokenBatch[] = [];
  rows.forEach((lengths, b) => {
    let at = b * T;
    for (const n of lengths) {
      for (let t = 0; t < n; t++) positionIds[at + t] = t;
      labels[at] = IGNORE_INDEX; // nothing before a document predicts its first token
      const own = ids.slice(at, at + n);
      alone.push({ ids: own, labels: own.slice(), batchSize: 1, seqLen: n });
      at += n;
    }
    labels.fill(IGNORE_INDEX, at, (b + 1) * T); // padding
  });
  return { packed: { ids, labels, batchSize: rows.length, seqLen: T, positionIds }, alone };
}

/** Each document's logits [n * V], from the packed pass and from its own. */
async function expectDocumentLogits(
  model: CausalLM,
  rows: number[][],
  packed: TokenBatch,
  alone: TokenBatch[],
) {
  const V = model.modelConfig.vocabSize;
  const ids = tf.tensor2d(packed.ids, [packed.batchSize, T], 'int32');
  const logitsOf = async (options: { positionIds?: Int32Array }) => {
    const out = model.forward(ids, options);
    const data = await out.data();
    out.dispose();
    return data;
  };
  const together = await logitsOf({ positionIds: packed.positionIds! });
  const across = await logitsOf({}); // the row as one sequence: documents see each other
  ids.dispose();
  let d = 0;
  let crossed = 0;
  rows.forEach((lengths, b) => {
    let at = b * T;
    for (const n of lengths) {
      const own = tf.tensor2d(alone[d]!.ids, [1, n], 'int32');
      const out = model.forward(own);
      const want = out.dataSync();
      tf.dispose([own, out]);
      const got = together.subarray(at * V, (at + n) * V);
      const scale = Math.max(...Array.from(want, Math.abs));
      expect(maxAbsDiff(got, want) / scale, `row ${b}, document ${d}`).toBeLessThan(1e-5);
      crossed = Math.max(crossed, maxAbsDiff(across.subarray(at * V, (at + n) * V), want) / scale);
      at += n;
      d++;
    }
  });
  expect(crossed, 'the row attended as one sequence differs').toBeGreaterThan(1e-2);
}

/** The packed batch's loss and gradient equal the sums of its documents' own, checkpointed or not. */
function expectSummedGradients(
  model: CausalLM,
  params: TrainableParameters,
  packed: TokenBatch,
  alone: TokenBatch[],
) {
  const pass = (batch: TokenBatch, gradientCheckpointing = false) =>
    params.lossAndGrads(() =>
      tokenNllSum(model, batch, { training: true, dropout: false, gradientCheckpointing }),
    );
  const sum = new Float64Array(params.size);
  let loss = 0;
  for (const doc of alone) {
    const one = pass(doc);
    loss += one.loss;
    one.grads.forEach((g, i) => (sum[i]! += g));
  }
  const scale = Math.max(...Array.from(sum, Math.abs));
  for (const checkpointed of [false, true]) {
    const together = pass(packed, checkpointed);
    expect(
      Math.abs(together.loss - loss) / loss,
      `loss, checkpointed ${checkpointed}`,
    ).toBeLessThan(1e-5);
    expect(
      maxAbsDiff(together.grads, sum) / scale,
      `gradients, checkpointed ${checkpointed}`,
    ).toBeLessThan(1e-4);
  }
}

describe('packed documents: each attends within itself, at its own positions', () => {
  const models = [
    { label: 'gpt2', config: () => modelConfigFromJson(GPT2, 'gpt2'), seed: 3 },
    ...LLAMA_CASES.map((c) => ({ label: c.label, config: () => caseConfig(c), seed: c.seed })),
  ];
  for (const { label, config: configOf, seed } of models) {
    it(`${label}: logits equal each document's alone; loss and gradients their sums`, async () => {
      const config = configOf();
      const weights =
        label === 'gpt2' ? randomModelWeights(config, seed) : randomWeights(config, seed);
      const model = buildModel(config, weights);
      const rows = config.rotarySwitch !== undefined ? LONGROPE_ROWS : ROWS;
      const { packed, alone } = documents(rows, config.vocabSize, seed);
      await expectDocumentLogits(model, rows, packed, alone);
      expectSummedGradients(
        model,
        await loraEverywhere(model, { ...DEFAULT_LORA, r: 4, dropout: 0 }),
        packed,
        alone,
      );
      model.dispose();
    });
  }

  it('refuses positions no packing makes', () => {
    expect(() => checkPositionIds(Int32Array.from([0, 1, 3, 0]), 1, 4)).toThrow(
      /row 0, token 2: position 3 after 1/,
    );
    expect(() => checkPositionIds(Int32Array.from([1, 2]), 1, 2)).toThrow(/position 1 after -1/);
    expect(() => checkPositionIds(new Int32Array(3), 1, 4)).toThrow(/has 3 entries/);
  });
});
