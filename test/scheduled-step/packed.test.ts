// The hand-scheduled LoRA step on rows that pack documents apart (best-fit
// packing's position ids), on real WebGPU execution (SwiftShader here): each
// document attends within itself and is embedded or rotated by its own
// positions, so loss and gradients equal the tape's (which splits the row
// into its documents, packed-documents.ts) for GPT-2 and the Llama family,
// with sliding windows, soft caps, two rotary bases, NoPE layers, one-token
// documents and a document across the kernels' row blocks; evaluation
// likewise; and what stays on the tape is named.
import { afterEach, describe, expect, it } from 'vitest';
import {
  type LlamaConfig,
  type TokenBatch,
  ScheduledGradients,
  chooseStepGradients,
  evaluateLossSums,
  scheduledStepUnsupported,
} from '../../packages/models/src/index.js';
import { webGpuSuite } from '../../packages/core/test/webgpu-suite.js';
import {
  CONFIG,
  batch,
  expectTapeEquality,
  llamaBatch,
  loraLlama,
  loraModel,
  tapeSums,
} from './fixtures.js';
import {
  GEMMA3_OVERRIDES,
  GEMMA_OVERRIDES,
  GLM4_OVERRIDES,
  PHI3_OVERRIDES,
} from '../../packages/models/test/fixtures/tiny-llama.js';

webGpuSuite();

/** `base` with each row packing documents of `lengths` (summing to the row's length). */
function packed(base: TokenBatch, lengths: number[][]): TokenBatch {
  const positionIds = Int32Array.from(
    lengths.flatMap((row) => row.flatMap((n) => [...Array(n).keys()])),
  );
  expect(positionIds.length).toBe(base.batchSize * base.seqLen);
  return { ...base, positionIds };
}

describe('the hand-scheduled step on packed documents equals the tape', () => {
  it('GPT-2 (its own position embeddings; embedding, residual and LoRA dropout), 2 x 11', async () => {
    const config = { ...CONFIG, embdPdrop: 0.1, residPdrop: 0.1 };
    const { model, params } = await loraModel(config, ['c_attn', 'c_proj', 'c_fc'], 0.1);
    try {
      const lengths = [[4, 1, 6], [11]];
      const batches = [
        packed(batch(2, 11), lengths),
        packed(batch(2, 11, 1), [
          [2, 9],
          [5, 5, 1],
        ]),
      ];
      expect(scheduledStepUnsupported(model, params, true)).toBeNull();
      await expectTapeEquality(model, params, batches);
      // The documents matter: over whole rows the loss differs.
      const [rows, docs] = [
        await tapeSums(model, params, [batch(2, 11)]),
        await tapeSums(model, params, batches.slice(0, 1)),
      ];
      expect(Math.abs(rows.loss - docs.loss) / docs.loss).toBeGreaterThan(1e-3);
    } finally {
      model.dispose();
    }
  });

  const llamaCases: [string, Partial<LlamaConfig>, number[][][]][] = [
    [
      'Llama (grouped-query attention), 2 x 9',
      {},
      [
        [
          [3, 5, 1],
          [2, 7],
        ],
        [[9], [1, 1, 7]],
      ],
    ],
    [
      'Gemma 3 (a sliding layer with its own rotary base, window 3), 2 x 9',
      { ...GEMMA3_OVERRIDES, slidingWindow: 3, ropeScaling: { type: 'linear', factor: 2 } },
      [
        [
          [6, 3],
          [2, 2, 5],
        ],
        [[9], [4, 5]],
      ],
    ],
    [
      'Gemma 2 (soft-capped scores, a sliding layer), 2 x 9',
      {
        ...GEMMA_OVERRIDES,
        modelType: 'gemma2',
        postNorms: true,
        queryPreAttnScalar: 5,
        slidingWindow: 3,
        slidingLayers: [true, false],
        attnSoftcap: 2,
        finalSoftcap: 3,
      },
      [
        [[5, 4], [9]],
        [
          [1, 8],
          [3, 3, 3],
        ],
      ],
    ],
    [
      'GLM-4 (adjacent-pair rotation), 2 x 7',
      GLM4_OVERRIDES,
      [
        [[3, 4], [7]],
        [
          [2, 5],
          [1, 6],
        ],
      ],
    ],
    [
      'SmolLM3 (layer 1 without rotary embedding), 2 x 7',
      { modelType: 'smollm3', ropeLayers: [true, false], tieWordEmbeddings: true },
      [
        [[4, 3], [7]],
        [[7], [2, 2, 3]],
      ],
    ],
    [
      'Mistral (window 40), 1 x 150: a document across two row blocks of 64 and key tiles',
      { maxPositions: 160, slidingWindow: 40 },
      [[[90, 1, 59]], [[20, 130]]],
    ],
  ];
  it.each(llamaCases)(
    '%s',
    async (_name, overrides, lengths) => {
      const { model, params } = await loraLlama(overrides, 'all-linear');
      try {
        const T = lengths[0]![0]!.reduce((a, b) => a + b, 0);
        const B = lengths[0]!.length;
        const batches = lengths.map((rows, i) => packed(llamaBatch(B, T, i), rows));
        expect(scheduledStepUnsupported(model, params, true)).toBeNull();
        await expectTapeEquality(model, params, batches);
      } finally {
        model.dispose();
      }
    },
    240_000,
  );
});

describe('evaluation and what stays on the tape', () => {
  const choice = process.env.LORAFLEET_WEBGPU_STEP;
  afterEach(() => {
    if (choice === undefined) delete process.env.LORAFLEET_WEBGPU_STEP;
    else process.env.LORAFLEET_WEBGPU_STEP = choice;
  });

  it('evaluates packed documents on the plan, even where training them takes the tape', async () => {
    // Attention dropout: training packed documents takes the tape; evaluation has no dropout.
    const { model, params } = await loraModel({ ...CONFIG, attnPdrop: 0.1 }, ['c_attn']);
    try {
      const batches = [packed(batch(2, 9), [[3, 6], [9]]), packed(batch(1, 9, 1), [[1, 4, 4]])];
      expect(scheduledStepUnsupported(model, null, true)).toBeNull();
      process.env.LORAFLEET_WEBGPU_STEP = 'scheduled';
      const plan = await evaluateLossSums(model, batches);
      process.env.LORAFLEET_WEBGPU_STEP = 'tape';
      const tape = await evaluateLossSums(model, batches);
      expect(plan.tokens).toBe(tape.tokens);
      expect(Math.abs(plan.lossSum - tape.lossSum) / tape.lossSum).toBeLessThan(1e-6);
      // Training: named, and auto takes the tape; the plan refuses such a micro-batch.
      expect(chooseStepGradients(model, params, 'auto', { packedDocuments: true })).toEqual({
        path: 'tape',
        reason: expect.stringMatching(
          /attn_pdrop > 0: the tape draws attention dropout per packed document/,
        ),
      });
      expect(chooseStepGradients(model, params, 'auto')).toEqual({
        path: 'scheduled',
        reason: null,
      });
      const s = new ScheduledGradients(model, params);
      try {
        expect(() => s.add(batches[0]!)).toThrow(/cannot train packed documents: attn_pdrop > 0/);
      } finally {
        s.dispose();
      }
    } finally {
      model.dispose();
    }
  });

  it("leaves LongRoPE's packed rows to the tape, and Llama's attention dropout", async () => {
    const phi3 = await loraLlama(PHI3_OVERRIDES, ['o_proj']);
    const dropping = await loraLlama({ attentionDropout: 0.1 }, ['o_proj']);
    try {
      expect(scheduledStepUnsupported(phi3.model, phi3.params)).toBeNull();
      expect(scheduledStepUnsupported(phi3.model, null, true)).toMatch(
        /LongRoPE picks each row's factors/,
      );
      expect(scheduledStepUnsupported(dropping.model, dropping.params, true)).toMatch(
        /attention_dropout > 0/,
      );
      expect(scheduledStepUnsupported(dropping.model, null, true)).toBeNull();
    } finally {
      phi3.model.dispose();
      dropping.model.dispose();
    }
  });
});
