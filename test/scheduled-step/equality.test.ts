// The hand-scheduled LoRA step (packages/models/src/scheduled-step.ts and the
// families' recipes) on real WebGPU execution (SwiftShader here): its loss
// and gradients equal tfjs's tape on the same backend, on odd shapes and
// batch 1, with adapters on some layers only, for GPT-2 and the Llama
// family (Gemma and Gemma 3 included), with LoRA's and the model's dropout, half-precision base weights
// and Mistral's sliding window.
import { describe, expect, it } from 'vitest';
import {
  type LlamaConfig,
  scheduledStepUnsupported,
  storeBasesAs,
} from '../../packages/models/src/index.js';
import { webGpuSuite } from '../../packages/core/test/webgpu-suite.js';
import {
  CONFIG,
  batch,
  expectTapeEquality,
  llamaBatch,
  loraLlama,
  loraModel,
  maxRelDiff,
  tapeSums,
} from './fixtures.js';
import {
  GEMMA3_OVERRIDES,
  GEMMA_OVERRIDES,
  GRANITE_OVERRIDES,
  GLM4_OVERRIDES,
  OLMO2_OVERRIDES,
  PHI3_OVERRIDES,
} from '../../packages/models/test/fixtures/tiny-llama.js';

webGpuSuite();

const PHI3_ROPE = PHI3_OVERRIDES.ropeScaling as Extract<
  LlamaConfig['ropeScaling'],
  { type: 'longrope' }
>;

describe('the hand-scheduled LoRA step equals the tape', () => {
  // Backward stops early where nothing below trains: the lowest adapter decides where.
  const cases: [string, string[] | string, number, number][] = [
    ['every linear layer, 2 x 7 tokens', ['c_attn', 'c_proj', 'c_fc'], 2, 7],
    ['c_attn only, batch 1 x 13 tokens', ['c_attn'], 1, 13],
    ['the MLP only, 3 x 5 tokens', ['c_fc', 'mlp.c_proj'], 3, 5],
    ['the upper block only, 2 x 6 tokens', '.*h\\.1\\.(attn\\.c_proj|mlp\\.c_fc)', 2, 6],
    [
      "the lowest block's mlp.c_proj and the upper c_attn",
      '.*(h\\.0\\.mlp\\.c_proj|h\\.1\\.attn\\.c_attn)',
      2,
      5,
    ],
  ];
  it.each(cases)('equals the tape: %s', async (_name, targets, B, T) => {
    const { model, params } = await loraModel(CONFIG, targets);
    try {
      await expectTapeEquality(model, params, [batch(B, T), batch(B, T, 1)]);
    } finally {
      model.dispose();
    }
  });

  const llamaCases: [string, Partial<LlamaConfig>, string[] | string, number, number][] = [
    ['Llama, every linear layer, 2 x 7 tokens', {}, 'all-linear', 2, 7],
    ['Llama, q and v only, batch 1 x 11 tokens', {}, ['q_proj', 'v_proj'], 1, 11],
    [
      'Qwen2 (q/k/v biases, tied head), k_proj and the MLP, 3 x 5 tokens',
      { modelType: 'qwen2', qkvBias: true, tieWordEmbeddings: true },
      ['k_proj', 'gate_proj', 'down_proj'],
      3,
      5,
    ],
    [
      'Qwen3 (q/k norms), upper layer o_proj and up_proj, 2 x 6 tokens',
      { modelType: 'qwen3', qkNorm: 'head' },
      '.*layers\\.1\\.(self_attn\\.o_proj|mlp\\.up_proj)',
      2,
      6,
    ],
    [
      'Gemma (1 + weight norms, embeddings times 4, GeGLU, tied head), every linear layer, 2 x 7',
      GEMMA_OVERRIDES,
      'all-linear',
      2,
      7,
    ],
    [
      'Gemma 3 (norms after attention and MLP, q/k norms, a sliding layer with its own rotary base), 2 x 9',
      { ...GEMMA3_OVERRIDES, slidingWindow: 3, ropeScaling: { type: 'linear', factor: 2 } },
      'all-linear',
      2,
      9,
    ],
    [
      'Gemma 2 (soft-capped scores and logits, norms after attention and MLP, a sliding layer), 2 x 9',
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
      'all-linear',
      2,
      9,
    ],
    [
      'Granite (embedding, attention and residual multipliers, logits scaling), every linear layer, 2 x 7',
      GRANITE_OVERRIDES,
      'all-linear',
      2,
      7,
    ],
    [
      'SmolLM3 (layer 1 without rotary embedding, tied head), every linear layer, 2 x 7',
      { modelType: 'smollm3', ropeLayers: [true, false], tieWordEmbeddings: true },
      'all-linear',
      2,
      7,
    ],
    [
      'Phi-3 (fused qkv_proj and gate_up_proj, GQA, LongRoPE, half of each head rotates, window 3), every linear layer, 2 x 7',
      PHI3_OVERRIDES,
      'all-linear',
      2,
      7,
    ],
    ['Phi-3, gate_up_proj alone, 1 x 5 tokens', PHI3_OVERRIDES, ['gate_up_proj'], 1, 5],
    [
      "Phi-3 past LongRoPE's original context of 4 (the long factors), every linear layer, 2 x 7",
      { ...PHI3_OVERRIDES, ropeScaling: { ...PHI3_ROPE, originalMaxPositions: 4 } },
      'all-linear',
      2,
      7,
    ],
    [
      'OLMo 2 (norms after attention and MLP only, q/k norms over all heads), every linear layer, 2 x 7',
      OLMO2_OVERRIDES,
      'all-linear',
      2,
      7,
    ],
    ['OLMo 2, q_proj alone, 1 x 6 tokens', OLMO2_OVERRIDES, ['q_proj'], 1, 6],
    [
      "OLMo 3 (OLMo 2's layer, layer 0 sliding over 3 unscaled, layer 1 full with YaRN), every linear layer, 2 x 7",
      {
        ...OLMO2_OVERRIDES,
        modelType: 'olmo3',
        slidingWindow: 3,
        slidingLayers: [true, false],
        ropeTheta: 500000,
        localRopeTheta: 500000,
        ropeScaling: {
          type: 'yarn',
          factor: 4,
          originalMaxPositions: 4,
          betaFast: 32,
          betaSlow: 1,
          truncate: true,
          attentionFactor: 1.1386,
        },
      },
      'all-linear',
      2,
      7,
    ],
    [
      'EXAONE 4 (norms after the branches only, q/k norms per head, layer 0 sliding over 3, layer 1 full without rotary embedding), every linear layer, 2 x 7',
      {
        ...OLMO2_OVERRIDES,
        modelType: 'exaone4',
        qkNorm: 'head',
        slidingWindow: 3,
        slidingLayers: [true, false],
        ropeLayers: [true, false],
      },
      'all-linear',
      2,
      7,
    ],
    [
      'GLM-4 (adjacent-pair rotation, fused gate_up_proj, q/k/v bias, four norms), every linear layer, 2 x 7',
      GLM4_OVERRIDES,
      'all-linear',
      2,
      7,
    ],
    [
      'Mistral shape, no GQA (4 kv heads), llama3 rope scaling',
      {
        numKvHeads: 4,
        ropeScaling: {
          type: 'llama3',
          factor: 8,
          lowFreqFactor: 1,
          highFreqFactor: 4,
          originalMaxPositions: 8,
        },
      },
      ['q_proj', 'k_proj', 'o_proj'],
      2,
      9,
    ],
  ];
  it.each(llamaCases)('equals the tape: %s', async (_name, overrides, targets, B, T) => {
    const { model, params } = await loraLlama(overrides, targets);
    try {
      await expectTapeEquality(model, params, [llamaBatch(B, T), llamaBatch(B, T, 1)]);
    } finally {
      model.dispose();
    }
  });

  // LoRA dropout: the plan draws the tape's masks (a hash of the micro-batch's seed and the
  // element) for the LoRA input in forward and for the LoRA branch of dx in backward.
  it('equals the tape with LoRA dropout: GPT-2, every linear layer, 2 x 7 tokens', async () => {
    const { model, params } = await loraModel(CONFIG, ['c_attn', 'c_proj', 'c_fc'], 0.3);
    try {
      await expectTapeEquality(model, params, [batch(2, 7), batch(2, 7, 1)]);
      // Not vacuous: the masks change the gradient.
      const masked = await tapeSums(model, params, [batch(2, 7)]);
      const noDropout = await loraModel(CONFIG, ['c_attn', 'c_proj', 'c_fc'], 0);
      const plain = await tapeSums(noDropout.model, noDropout.params, [batch(2, 7)]);
      noDropout.model.dispose();
      expect(maxRelDiff(masked.grads, plain.grads)).toBeGreaterThan(0.01);
    } finally {
      model.dispose();
    }
  });

  // Model dropout: GPT-2's embeddings, attention probabilities (drawn in the attention
  // kernels) and residual branches, and Llama's attention_dropout, with LoRA dropout too.
  it('equals the tape with model dropout: GPT-2, every pdrop 0.2, every linear layer', async () => {
    const dropping = { ...CONFIG, embdPdrop: 0.2, attnPdrop: 0.2, residPdrop: 0.2 };
    const targets = ['c_attn', 'c_proj', 'c_fc'];
    const { model, params } = await loraModel(dropping, targets, 0.1);
    try {
      expect(scheduledStepUnsupported(model, params)).toBeNull();
      await expectTapeEquality(model, params, [batch(2, 7), batch(2, 7, 1)]);
      // Not vacuous: each kind of site changes the gradient.
      const want = await tapeSums(model, params, [batch(2, 7)]);
      for (const off of ['embdPdrop', 'attnPdrop', 'residPdrop'] as const) {
        const other = await loraModel({ ...dropping, [off]: 0 }, targets, 0.1);
        const got = await tapeSums(other.model, other.params, [batch(2, 7)]);
        other.model.dispose();
        expect(maxRelDiff(want.grads, got.grads), off).toBeGreaterThan(0.01);
      }
    } finally {
      model.dispose();
    }
  });

  it('equals the tape with model dropout: Llama, attention_dropout 0.3, q and v', async () => {
    const { model, params } = await loraLlama({ attentionDropout: 0.3 }, ['q_proj', 'v_proj']);
    try {
      expect(scheduledStepUnsupported(model, params)).toBeNull();
      await expectTapeEquality(model, params, [llamaBatch(2, 7), llamaBatch(2, 7, 1)]);
    } finally {
      model.dispose();
    }
  });

  // --base-dtype: W stored packed, unpacked into a transient f32 buffer per product.
  it.each([
    ['bf16', 'f16'],
    ['nf4', 'nf4'],
  ] as const)(
    'equals the tape with the base weights stored as %s (GPT-2) and %s (Llama)',
    async (g, l) => {
      const gpt2 = await loraModel(CONFIG, ['c_attn', 'c_proj', 'c_fc'], 0.1);
      const llama = await loraLlama({}, 'all-linear');
      try {
        await storeBasesAs(gpt2.model, g);
        await storeBasesAs(llama.model, l);
        expect(gpt2.model.linears()[0]!.baseDtype).toBe(g);
        for (const { model, params } of [gpt2, llama]) {
          expect(scheduledStepUnsupported(model, params)).toBeNull();
        }
        await expectTapeEquality(gpt2.model, gpt2.params, [batch(2, 7), batch(2, 7, 1)]);
        await expectTapeEquality(llama.model, llama.params, [
          llamaBatch(2, 7),
          llamaBatch(2, 7, 1),
        ]);
      } finally {
        gpt2.model.dispose();
        llama.model.dispose();
      }
    },
  );

  // Mistral's sliding window, shorter than the batch: the attention kernels' window.
  it('equals the tape with a sliding window of 3 over 9 tokens (Mistral), every linear layer', async () => {
    const { model, params } = await loraLlama(
      { modelType: 'mistral', slidingWindow: 3, attentionDropout: 0.2 },
      'all-linear',
    );
    try {
      expect(scheduledStepUnsupported(model, params)).toBeNull();
      await expectTapeEquality(model, params, [llamaBatch(2, 9), llamaBatch(2, 9, 1)]);
    } finally {
      model.dispose();
    }
  });

  it('equals the tape with LoRA dropout: Llama, every linear layer, 2 x 7 tokens', async () => {
    const { model, params } = await loraLlama({}, 'all-linear', 0.2);
    try {
      await expectTapeEquality(model, params, [llamaBatch(2, 7), llamaBatch(2, 7, 1)]);
    } finally {
      model.dispose();
    }
  });
});

// DoRA (use_dora): n = ||W + s B A|| per output, from the current A and B,
// held constant in backward as the tape holds it; each magnitude's gradient is
// also compared on its own scale.
describe('the hand-scheduled step with DoRA equals the tape', () => {
  const MAGNITUDES = /lora_magnitude_vector$/;
  const gpt2 = (targets: string[], dropout: number) => () =>
    loraModel(CONFIG, targets, dropout, true);
  const llama =
    (overrides: Partial<LlamaConfig>, targets: string[] | string, dropout: number) => () =>
      loraLlama(overrides, targets, dropout, true);
  const cases: [
    string,
    () => ReturnType<typeof loraModel | typeof loraLlama>,
    typeof batch,
    number,
    number,
  ][] = [
    [
      "GPT-2 (Conv1D: W's columns normed), every linear layer, 2 x 7 tokens",
      gpt2(['c_attn', 'c_proj', 'c_fc'], 0),
      batch,
      2,
      7,
    ],
    [
      'GPT-2 with LoRA dropout 0.3, c_attn and mlp.c_proj, batch 1 x 9 tokens',
      gpt2(['c_attn', 'mlp.c_proj'], 0.3),
      batch,
      1,
      9,
    ],
    [
      'Llama with LoRA dropout 0.2, every linear layer, 2 x 7 tokens',
      llama({}, 'all-linear', 0.2),
      llamaBatch,
      2,
      7,
    ],
  ];
  it.each(cases)('%s', async (_name, make, tokens, B, T) => {
    const { model, params } = await make();
    try {
      expect(scheduledStepUnsupported(model, params)).toBeNull();
      await expectTapeEquality(model, params, [tokens(B, T), tokens(B, T, 1)], MAGNITUDES);
    } finally {
      model.dispose();
    }
  });

  it('Phi-3 (fused layers) with f16 base weights, qkv_proj and down_proj, 3 x 5 tokens', async () => {
    const { model, params } = await loraLlama(PHI3_OVERRIDES, ['qkv_proj', 'down_proj'], 0, true);
    try {
      await storeBasesAs(model, 'f16');
      expect(scheduledStepUnsupported(model, params)).toBeNull();
      await expectTapeEquality(model, params, [llamaBatch(3, 5), llamaBatch(3, 5, 1)], MAGNITUDES);
    } finally {
      model.dispose();
    }
  });
});
