// The model-level half of the backend conformance suite (the LoRA math is in
// packages/core/test/lora-conformance.test.ts): on every test backend, three
// full LoRA training steps of a tiny GPT-2, of a tiny Llama (grouped-query
// attention, RMSNorm, SwiGLU; dropout, AdamW, clipping) and of a tiny Gemma
// ((1 + weight) RMSNorm, scaled embeddings, GeGLU, tied head), of a tiny
// Gemma 2 (soft-capped scores and logits, norms after attention and MLP) and of a tiny
// Gemma 3 (norms after attention and MLP, q/k norms, a sliding and a full
// layer with two rotary bases) end with
// wasm's parameters, the eval loss is wasm's, and greedy generation with the
// KV cache gives wasm's tokens, within the tolerances of each backend's
// descriptor; and a GPT-2's and a Gemma 2's pass over rows packing documents
// apart gives wasm's loss and gradient. webgpu runs its WGSL for real on
// SwiftShader where there is no GPU (LORAFLEET_BACKENDS and LORAFLEET_NO_VULKAN: see @lorafleet/core/testing).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BackendName,
  TrainableParameters,
  backendDescriptor,
  lossAndGradsAsync,
  readParametersAsync,
  releaseWebGpu,
  tf,
  useBackend,
  webGpuErrors,
} from '@lorafleet/core';
import { testBackends } from '@lorafleet/core/testing';
import {
  type CausalLM,
  type Gpt2Config,
  type LlamaConfig,
  type TokenBatch,
  Gpt2Model,
  IGNORE_INDEX,
  LlamaModel,
  addLora,
  evaluateLoss,
  generateBatch,
  randomGpt2Weights,
  randomLlamaWeights,
  tokenNllSum,
} from '../packages/models/src/index.js';
import {
  GEMMA3_OVERRIDES,
  GEMMA_OVERRIDES,
  tinyLlamaConfig,
} from '../packages/models/test/fixtures/tiny-llama.js';
import { TrainingStep } from '../packages/worker/src/index.js';

const REFERENCE: BackendName = 'wasm';
const STEPS = 3;

const CONFIG: Gpt2Config = {
  vocabSize: 61,
  nPositions: 12,
  nEmbd: 16,
  nLayer: 2,
  nHead: 2,
  nInner: null,
  layerNormEpsilon: 1e-5,
  embdPdrop: 0,
  attnPdrop: 0,
  residPdrop: 0,
};

const LLAMA: LlamaConfig = tinyLlamaConfig(CONFIG.vocabSize);
const GEMMA: LlamaConfig = tinyLlamaConfig(CONFIG.vocabSize, GEMMA_OVERRIDES);
const GEMMA3: LlamaConfig = tinyLlamaConfig(CONFIG.vocabSize, GEMMA3_OVERRIDES);
const GEMMA2: LlamaConfig = {
  ...GEMMA,
  modelType: 'gemma2',
  postNorms: true,
  queryPreAttnScalar: 5,
  slidingWindow: 4,
  slidingLayers: [true, false],
  attnSoftcap: 3,
  finalSoftcap: 6,
};
const LLAMA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

type Family = 'gpt2' | 'llama' | 'gemma' | 'gemma2' | 'gemma3';
const FAMILIES: Family[] = ['gpt2', 'llama', 'gemma', 'gemma2', 'gemma3'];

/** Each family's model (weights with std 0.3) and the linear layers LoRA adapts: all of them. */
const MODELS: Record<Family, { build: () => CausalLM; targets: string[] }> = {
  gpt2: {
    build: () => new Gpt2Model(CONFIG, randomGpt2Weights(CONFIG, 5, 0.3)),
    targets: ['c_attn', 'c_proj', 'c_fc'],
  },
  llama: {
    build: () => new LlamaModel(LLAMA, randomLlamaWeights(LLAMA, 5, 0.3)),
    targets: LLAMA_TARGETS,
  },
  gemma: {
    build: () => new LlamaModel(GEMMA, randomLlamaWeights(GEMMA, 6, 0.3)),
    targets: LLAMA_TARGETS,
  },
  gemma2: {
    build: () => new LlamaModel(GEMMA2, randomLlamaWeights(GEMMA2, 9, 0.3)),
    targets: LLAMA_TARGETS,
  },
  gemma3: {
    build: () => new LlamaModel(GEMMA3, randomLlamaWeights(GEMMA3, 8, 0.3)),
    targets: LLAMA_TARGETS,
  },
};

/** Two micro-batches of 2 x 10 tokens, some labels ignored. */
function microBatches(): TokenBatch[] {
  const [B, T] = [2, 10];
  return [0, 1].map((m) => {
    const ids = Int32Array.from(
      { length: B * T },
      (_, i) => (i * 7 + 3 + m * 5) % CONFIG.vocabSize,
    );
    const labels = ids.slice();
    labels[m] = IGNORE_INDEX;
    return { ids, labels, batchSize: B, seqLen: T };
  });
}

/** What one backend computes; the test compares it with wasm's. */
interface Outcome {
  /** LoRA parameters after each step. */
  values: Float32Array[];
  losses: number[];
  evalLoss: number;
  tokens: number[][];
}

/**
 * A tiny model with LoRA (dropout 0.1) on every linear layer. Weights with
 * std 0.3 make the logits far apart, so greedy picks are not near-ties.
 */
async function loraModel(
  family: Family,
): Promise<{ model: CausalLM; params: TrainableParameters }> {
  const model = MODELS[family].build();
  const layers = await addLora(
    model.linears(),
    'default',
    { r: 4, alpha: 8, dropout: 0.1, rslora: false },
    { kind: 'kaiming' },
    MODELS[family].targets,
    1,
  );
  return { model, params: TrainableParameters.fromLoraLayers(layers) };
}

async function run(backend: BackendName, family: Family): Promise<Outcome> {
  await useBackend(backend);
  const { model, params } = await loraModel(family);
  try {
    const step = new TrainingStep(model, params, {
      optimizer: {
        kind: 'adamw',
        lr: 2e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0.01,
      },
      schedule: { kind: 'constant' },
      maxGradNorm: 1,
      seed: 3,
    });
    const values: Float32Array[] = [];
    const losses: number[] = [];
    for (let s = 0; s < STEPS; s++) {
      losses.push((await step.run(microBatches())).loss);
      values.push(await readParametersAsync(params));
    }
    const { loss: evalLoss } = await evaluateLoss(model, microBatches());
    const tokens = await generateBatch(
      model,
      [
        [1, 2, 3],
        [4, 5, 6, 7, 8],
      ],
      { temperature: 0, topK: 0, topP: 1, seed: 0, maxNewTokens: 5, batchSize: 2 },
    );
    return { values, losses, evalLoss, tokens };
  } finally {
    model.dispose();
  }
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

const references = {} as Record<Family, Outcome>;
const initials = {} as Record<Family, Float32Array>;

beforeAll(async () => {
  for (const family of FAMILIES) {
    references[family] = await run(REFERENCE, family);
    const { model, params } = await loraModel(family);
    initials[family] = await readParametersAsync(params);
    model.dispose();
  }
}, 120_000);

afterAll(async () => {
  await useBackend('wasm');
  releaseWebGpu();
});

for (const [backend, family] of testBackends().flatMap((b) =>
  FAMILIES.map((f) => [b, f] as const),
)) {
  const { tolerance, skip } = backendDescriptor(backend);
  describe(`${family} model conformance on ${backend} (against ${REFERENCE})`, () => {
    let outcome: Outcome;
    let reference: Outcome;
    let initial: Float32Array;
    beforeAll(async () => {
      reference = references[family];
      initial = initials[family];
      // tfjs-webgpu runs ops on small CPU-resident inputs on the CPU: test the GPU kernels.
      if (backend !== 'webgpu') {
        outcome = await run(backend, family);
        return;
      }
      await useBackend('webgpu'); // registers the flag
      tf.env().set('WEBGPU_CPU_FORWARD', false);
      try {
        outcome = await run(backend, family);
      } finally {
        tf.env().set('WEBGPU_CPU_FORWARD', true);
      }
    }, 600_000);
    afterAll(() => {
      if (backend === 'webgpu') expect(webGpuErrors()).toEqual([]);
    });

    it.skipIf(skip.training !== undefined)(
      `${STEPS} LoRA training steps end with ${REFERENCE}'s parameters (tolerance ${tolerance.training})`,
      () => {
        for (let s = 0; s < STEPS; s++) {
          expect(maxAbsDiff(outcome.values[s]!, reference.values[s]!)).toBeLessThan(
            tolerance.training,
          );
          expect(Math.abs(outcome.losses[s]! - reference.losses[s]!)).toBeLessThan(tolerance.loss);
        }
        // Not vacuous: the steps moved the parameters, and the loss went down.
        expect(maxAbsDiff(outcome.values[STEPS - 1]!, initial)).toBeGreaterThan(1e-2);
        expect(outcome.losses[STEPS - 1]!).toBeLessThan(outcome.losses[0]!);
      },
    );

    it.skipIf(skip.eval !== undefined)(
      `eval loss equals ${REFERENCE}'s (tolerance ${tolerance.loss})`,
      () => {
        expect(Number.isFinite(outcome.evalLoss)).toBe(true);
        expect(Math.abs(outcome.evalLoss - reference.evalLoss)).toBeLessThan(tolerance.loss);
      },
    );

    it.skipIf(skip.generation !== undefined)(
      `greedy generation with the KV cache gives ${REFERENCE}'s tokens`,
      () => {
        expect(outcome.tokens.map((t) => t.length)).toEqual([5, 5]);
        expect(outcome.tokens).toEqual(reference.tokens);
      },
    );
  });
}

/**
 * Rows packing documents apart (--packing-strategy bfd): [4, 1, 4] tokens and
 * [3, 5] plus one padding token, the attention run per document (the fused
 * kernel on webgpu, with Gemma 2's window of 4 and soft cap).
 */
function packedBatch(): TokenBatch {
  const rows = [
    [4, 1, 4],
    [3, 5, 1],
  ];
  const T = 9;
  const positionIds = Int32Array.from(
    rows.flatMap((lengths) => lengths.flatMap((n) => Array.from({ length: n }, (_, t) => t))),
  );
  const ids = Int32Array.from({ length: 2 * T }, (_, i) => (i * 5 + 2) % CONFIG.vocabSize);
  const labels = ids.map((id, i) => (positionIds[i] === 0 ? IGNORE_INDEX : id));
  return { ids, labels, batchSize: 2, seqLen: T, positionIds };
}

/** One training pass's loss and LoRA gradient on the packed batch (LoRA dropout drawn, seed 3). */
async function packedPass(backend: BackendName, family: Family) {
  await useBackend(backend);
  const { model, params } = await loraModel(family);
  try {
    const batch = packedBatch();
    const out = await lossAndGradsAsync(params, () =>
      tokenNllSum(model, batch, { training: true, seed: 3 }),
    );
    return { loss: out.loss, grads: Float32Array.from(out.grads) };
  } finally {
    model.dispose();
  }
}

for (const backend of testBackends()) {
  const { tolerance } = backendDescriptor(backend);
  for (const family of ['gpt2', 'gemma2'] as const) {
    it(`packed documents (${family}, ${backend}): the loss and gradient equal ${REFERENCE}'s`, async () => {
      const reference = await packedPass(REFERENCE, family);
      if (backend === 'webgpu') {
        await useBackend('webgpu'); // registers the flag
        tf.env().set('WEBGPU_CPU_FORWARD', false); // the GPU kernels, also on small inputs
      }
      try {
        const outcome = await packedPass(backend, family);
        expect(Math.abs(outcome.loss - reference.loss)).toBeLessThan(tolerance.loss);
        expect(maxAbsDiff(outcome.grads, reference.grads)).toBeLessThan(tolerance.training);
        expect(Math.max(...Array.from(reference.grads, Math.abs))).toBeGreaterThan(1e-3);
      } finally {
        if (backend === 'webgpu') tf.env().set('WEBGPU_CPU_FORWARD', true);
      }
      if (backend === 'webgpu') expect(webGpuErrors()).toEqual([]);
    }, 600_000);
  }
}
