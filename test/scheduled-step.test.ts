// The hand-scheduled GPT-2 LoRA step (packages/models/src/scheduled-step.ts,
// gpt2/scheduled.ts) on real WebGPU execution (SwiftShader here): its loss
// and gradients against tfjs's tape on the same backend and against the cpu
// backend, on odd shapes and batch 1, with adapters on some layers only;
// replays after the parameters change; three training steps of
// TrainingStep on both paths; and the reasons it refuses a model.
import { describe, expect, it } from 'vitest';
import {
  GradientAccumulator,
  readParametersAsync,
  TrainableParameters,
  selectWebGpuMatMul,
  tf,
} from '@lorafleet/core';
import { webGpuSuite } from '../packages/core/test/webgpu-suite.js';
import {
  type CausalLM,
  type Gpt2Config,
  type LlamaConfig,
  type TokenBatch,
  Gpt2Model,
  LlamaModel,
  randomLlamaWeights,
  IGNORE_INDEX,
  ScheduledGradients,
  ScheduledLoss,
  evaluateLossSums,
  scheduledEvaluation,
  addLora,
  chooseStepGradients,
  randomGpt2Weights,
  scheduledStepBytes,
  scheduledStepUnsupported,
  storeBasesAs,
  tokenNllSum,
} from '../packages/models/src/index.js';
import { TrainingStep } from '../packages/worker/src/index.js';
import { tinyLlamaConfig } from '../packages/models/test/fixtures/tiny-llama.js';

const CONFIG: Gpt2Config = {
  vocabSize: 97,
  nPositions: 24,
  nEmbd: 32,
  nLayer: 2,
  nHead: 4,
  nInner: null,
  layerNormEpsilon: 1e-5,
  embdPdrop: 0,
  attnPdrop: 0,
  residPdrop: 0,
};

function batch(B: number, T: number, salt = 0): TokenBatch {
  const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3 + salt * 11) % 97);
  const labels = ids.slice();
  labels[0] = IGNORE_INDEX;
  labels[Math.min(5, B * T - 1)] = IGNORE_INDEX;
  return { ids, labels, batchSize: B, seqLen: T };
}

/** A GPT-2 with adapters on `targets`, B not zero (so that dA is not zero either). */
async function loraModel(config: Gpt2Config, targets: string[] | string, dropout = 0) {
  const model = new Gpt2Model(config, randomGpt2Weights(config, 5));
  const layers = await addLora(
    model.linears(),
    'default',
    { r: 4, alpha: 8, dropout, rslora: false },
    { kind: 'kaiming' },
    targets,
    1,
  );
  const params = TrainableParameters.fromLoraLayers(layers);
  params.write(Float32Array.from(params.read(), (_, i) => Math.sin(i * 0.37) * 0.2));
  return { model, params };
}

/** A tiny Llama-family model (grouped-query attention: 4 heads over 2) with adapters on `targets`. */
async function loraLlama(overrides: Partial<LlamaConfig>, targets: string[] | string, dropout = 0) {
  const config = tinyLlamaConfig(61, overrides);
  const model = new LlamaModel(config, randomLlamaWeights(config, 7, 0.3));
  const layers = await addLora(
    model.linears(),
    'default',
    { r: 4, alpha: 8, dropout, rslora: false },
    { kind: 'kaiming' },
    targets,
    1,
  );
  const params = TrainableParameters.fromLoraLayers(layers);
  params.write(Float32Array.from(params.read(), (_, i) => Math.cos(i * 0.29) * 0.2));
  return { model, params };
}

/** Micro-batch i's seed (its dropout masks): the same on both paths. */
const seedOf = (i: number) => 1000 + 37 * i;

async function tapeSums(model: CausalLM, params: TrainableParameters, batches: TokenBatch[]) {
  const acc = new GradientAccumulator(params);
  for (const [i, b] of batches.entries())
    acc.add(() => tokenNllSum(model, b, { training: true, seed: seedOf(i) }));
  return acc.take();
}

async function scheduledSums(s: ScheduledGradients, batches: TokenBatch[]) {
  for (const [i, b] of batches.entries()) s.add(b, seedOf(i));
  return s.take();
}

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let [diff, scale] = [0, 0];
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(a[i]!));
  }
  return diff / scale;
}

/** Two micro-batches on both paths: the same loss and gradients, and not all zero. */
async function expectTapeEquality(
  model: CausalLM,
  params: TrainableParameters,
  batches: TokenBatch[],
) {
  const s = new ScheduledGradients(model, params);
  try {
    const want = await tapeSums(model, params, batches);
    const got = await scheduledSums(s, batches);
    expect(Math.abs(got.loss - want.loss) / want.loss).toBeLessThan(1e-6);
    expect(maxRelDiff(want.grads, got.grads)).toBeLessThan(1e-5);
    expect(got.grads.some((g) => g !== 0)).toBe(true);
  } finally {
    s.dispose();
  }
}

/** A batch over the tiny Llama's 61-word vocabulary. */
function llamaBatch(B: number, T: number, salt = 0): TokenBatch {
  const b = batch(B, T, salt);
  return { ...b, ids: b.ids.map((v) => v % 61), labels: b.labels.map((v) => (v < 0 ? v : v % 61)) };
}

webGpuSuite();

describe('the hand-scheduled LoRA step on webgpu', () => {
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
      { modelType: 'qwen3', qkNorm: true },
      '.*layers\\.1\\.(self_attn\\.o_proj|mlp\\.up_proj)',
      2,
      6,
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

  it('replays with the parameters as they are now, and frees what it allocated', async () => {
    const { model, params } = await loraModel(CONFIG, ['c_attn', 'c_fc']);
    const before = tf.memory().numTensors;
    const s = new ScheduledGradients(model, params);
    try {
      const b = [batch(2, 9)];
      await scheduledSums(s, b);
      const now = await readParametersAsync(params);
      params.write(Float32Array.from(now, (v, i) => v + 0.05 * Math.cos(i)));
      const want = await tapeSums(model, params, b);
      const got = await scheduledSums(s, b);
      expect(maxRelDiff(want.grads, got.grads)).toBeLessThan(1e-5);
      // A second shape gets its own plan; the sums are still one read.
      const mixed = [batch(2, 9), batch(1, 6, 2)];
      const wantMixed = await tapeSums(model, params, mixed);
      const gotMixed = await scheduledSums(s, mixed);
      expect(maxRelDiff(wantMixed.grads, gotMixed.grads)).toBeLessThan(1e-5);
      // A third shape drops the least recently used plan (two are kept).
      const three = [batch(1, 6, 3), batch(3, 4), batch(2, 9, 1)];
      const wantThree = await tapeSums(model, params, three);
      const gotThree = await scheduledSums(s, three);
      expect(maxRelDiff(wantThree.grads, gotThree.grads)).toBeLessThan(1e-5);
      s.dispose();
      // The parameter writes replaced the adapters' tensors one for one.
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      s.dispose();
      model.dispose();
    }
  });

  it('reuses memory: its buffers hold fewer bytes than its intermediates, as measured without a plan', async () => {
    const { model, params } = await loraModel({ ...CONFIG, nLayer: 4 }, ['c_attn']);
    const s = new ScheduledGradients(model, params);
    try {
      s.add(batch(2, 16));
      await s.take();
      const measured = scheduledStepBytes(model, params, 2, 16);
      expect(s.planBytes).toBe(measured.shared);
      expect(measured.shared).toBeLessThan(0.7 * measured.unshared);
      expect(measured.dispatches).toBe(s.dispatches);
    } finally {
      s.dispose();
      model.dispose();
    }
  });

  it('times each dispatch on the GPU, leaving the sums empty', async () => {
    const { model, params } = await loraModel(CONFIG, ['c_attn']);
    const s = new ScheduledGradients(model, params);
    try {
      const b = batch(2, 7);
      const want = await scheduledSums(s, [b]);
      s.add(b);
      const rows = await s.profile(batch(2, 7, 4));
      expect(rows).toHaveLength(s.dispatches);
      for (const r of rows) expect(r.ns).toBeGreaterThanOrEqual(0);
      expect(rows.some((r) => r.label.startsWith('LoraFleetMatMul ['))).toBe(true);
      expect(rows.some((r) => r.label.startsWith('heads ['))).toBe(true);
      expect(await scheduledSums(s, [b])).toEqual(want);
    } finally {
      s.dispose();
      model.dispose();
    }
  });

  // With dropout: TrainingStep gives each micro-batch's seed to either path.
  it('trains as the tape does: three TrainingSteps on each path, model and LoRA dropout 0.1', async () => {
    const dropping = { ...CONFIG, embdPdrop: 0.1, attnPdrop: 0.1, residPdrop: 0.1 };
    const run = async (path: 'tape' | 'scheduled') => {
      process.env.LORAFLEET_WEBGPU_STEP = path;
      const { model, params } = await loraModel(dropping, ['c_attn', 'c_proj'], 0.1);
      const step = new TrainingStep(model, params, {
        optimizer: { lr: 2e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 },
        schedule: { kind: 'constant' },
        maxGradNorm: 1,
        seed: 3,
      });
      try {
        expect(step.gradients.path).toBe(path);
        const losses: number[] = [];
        for (let i = 0; i < 3; i++)
          losses.push((await step.run([batch(2, 8, i), batch(2, 8, i + 5)])).loss);
        return { losses, values: step.snapshot().values };
      } finally {
        delete process.env.LORAFLEET_WEBGPU_STEP;
        step.dispose();
        model.dispose();
      }
    };
    const tape = await run('tape');
    const scheduled = await run('scheduled');
    for (const [i, loss] of tape.losses.entries()) expect(scheduled.losses[i]).toBeCloseTo(loss, 5);
    expect(maxRelDiff(tape.values, scheduled.values)).toBeLessThan(1e-5);
    expect(tape.losses[2]).toBeLessThan(tape.losses[0]!);
  });

  it('evaluates as the tape does, also a model that trains with dropout', async () => {
    const gpt2 = await loraModel({ ...CONFIG, attnPdrop: 0.1, residPdrop: 0.1 }, ['c_attn'], 0.1);
    const llama = await loraLlama({}, ['q_proj', 'down_proj']);
    try {
      for (const { model, params } of [gpt2, llama]) {
        const rows = [llamaBatch(2, 7), llamaBatch(1, 9, 2), llamaBatch(2, 7, 3)];
        expect(scheduledEvaluation(model)).toBeInstanceOf(ScheduledLoss);
        const tapeEval = async () => {
          process.env.LORAFLEET_WEBGPU_STEP = 'tape';
          try {
            expect(scheduledEvaluation(model)).toBeNull();
            return await evaluateLossSums(model, rows);
          } finally {
            delete process.env.LORAFLEET_WEBGPU_STEP;
          }
        };
        const scheduled = await evaluateLossSums(model, rows);
        const tape = await tapeEval();
        expect(scheduled.tokens).toBe(tape.tokens);
        expect(Math.abs(scheduled.lossSum - tape.lossSum) / tape.lossSum).toBeLessThan(1e-6);
        // One ScheduledLoss (its plans) across an update of the adapters sees the new values.
        const l = new ScheduledLoss(model);
        try {
          const sum = async () => {
            for (const r of rows) l.add(r);
            return l.take();
          };
          const before = await sum();
          const now = await readParametersAsync(params);
          params.write(Float32Array.from(now, (v, i) => v + 0.1 * Math.sin(i)));
          const after = await sum();
          const want = (await tapeEval()).lossSum;
          expect(Math.abs(after - want) / want).toBeLessThan(1e-6);
          expect(Math.abs(after - before) / want).toBeGreaterThan(1e-4);
        } finally {
          l.dispose();
        }
      }
    } finally {
      gpt2.model.dispose();
      llama.model.dispose();
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

  // --base-dtype: W stored as packed halves, unpacked into a transient f32 buffer per product.
  it('equals the tape with the base weights stored as bf16 (GPT-2) and f16 (Llama)', async () => {
    const gpt2 = await loraModel(CONFIG, ['c_attn', 'c_proj', 'c_fc'], 0.1);
    const llama = await loraLlama({}, 'all-linear');
    try {
      await storeBasesAs(gpt2.model, 'bf16');
      await storeBasesAs(llama.model, 'f16');
      expect(gpt2.model.linears()[0]!.baseDtype).toBe('bf16');
      for (const { model, params } of [gpt2, llama]) {
        expect(scheduledStepUnsupported(model, params)).toBeNull();
      }
      await expectTapeEquality(gpt2.model, gpt2.params, [batch(2, 7), batch(2, 7, 1)]);
      await expectTapeEquality(llama.model, llama.params, [llamaBatch(2, 7), llamaBatch(2, 7, 1)]);
    } finally {
      gpt2.model.dispose();
      llama.model.dispose();
    }
  });

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

  it('names why it cannot run, and auto falls back to the tape', async () => {
    const merged = await loraLlama({}, ['q_proj']);
    const loraDropout = await loraModel(CONFIG, ['c_attn'], 0.1);
    try {
      merged.model
        .linears()
        .find((l) => l.activeAdapter)!
        .merge();
      expect(scheduledStepUnsupported(merged.model, merged.params)).toMatch(/an adapter is merged/);
      expect(scheduledStepUnsupported(loraDropout.model, loraDropout.params)).toBeNull();
      expect(chooseStepGradients(merged.model, merged.params, 'auto')).toEqual({
        path: 'tape',
        reason: expect.stringMatching(/merged/),
      });
      expect(() => chooseStepGradients(merged.model, merged.params, 'scheduled')).toThrow(
        /LORAFLEET_WEBGPU_STEP=scheduled, but .* an adapter is merged/,
      );
      selectWebGpuMatMul('stock');
      try {
        expect(scheduledStepUnsupported(loraDropout.model, loraDropout.params)).toMatch(/stock/);
      } finally {
        selectWebGpuMatMul('project');
      }
    } finally {
      merged.model.dispose();
      loraDropout.model.dispose();
    }
  });
});
