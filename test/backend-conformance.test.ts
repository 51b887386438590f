// The model-level half of the backend conformance suite (the LoRA math is in
// packages/core/test/lora-conformance.test.ts): on every test backend, three
// full LoRA training steps of a tiny GPT-2 (dropout, AdamW, clipping) end with
// wasm's parameters, the eval loss is wasm's, and greedy generation with the
// KV cache gives wasm's tokens, within the tolerances of each backend's
// descriptor. webgpu runs its WGSL for real on SwiftShader where there is no
// GPU (LORAFLEET_BACKENDS and LORAFLEET_NO_VULKAN: see @lorafleet/core/testing).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BackendName,
  TrainableParameters,
  backendDescriptor,
  readParametersAsync,
  releaseWebGpu,
  tf,
  useBackend,
  webGpuErrors,
} from '@lorafleet/core';
import { testBackends } from '@lorafleet/core/testing';
import {
  type Gpt2Config,
  type TokenBatch,
  Gpt2Model,
  IGNORE_INDEX,
  addLora,
  evaluateLoss,
  generateBatch,
  randomGpt2Weights,
} from '../packages/models/src/index.js';
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
 * The tiny GPT-2 with LoRA (dropout 0.1) on every linear layer. Weights with
 * std 0.3 make the logits far apart, so greedy picks are not near-ties.
 */
async function loraModel(): Promise<{ model: Gpt2Model; params: TrainableParameters }> {
  const model = new Gpt2Model(CONFIG, randomGpt2Weights(CONFIG, 5, 0.3));
  const layers = await addLora(
    model.linears(),
    'default',
    { r: 4, alpha: 8, dropout: 0.1, rslora: false },
    { kind: 'kaiming' },
    ['c_attn', 'c_proj', 'c_fc'],
    1,
  );
  return { model, params: TrainableParameters.fromLoraLayers(layers) };
}

async function run(backend: BackendName): Promise<Outcome> {
  await useBackend(backend);
  const { model, params } = await loraModel();
  try {
    const step = new TrainingStep(model, params, {
      optimizer: { lr: 2e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 },
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

let reference: Outcome;
let initial: Float32Array;

beforeAll(async () => {
  reference = await run(REFERENCE);
  const { model, params } = await loraModel();
  initial = await readParametersAsync(params);
  model.dispose();
}, 60_000);

afterAll(async () => {
  await useBackend('wasm');
  releaseWebGpu();
});

for (const backend of testBackends()) {
  const { tolerance, skip } = backendDescriptor(backend);
  describe(`model conformance on ${backend} (against ${REFERENCE})`, () => {
    let outcome: Outcome;
    beforeAll(async () => {
      // tfjs-webgpu runs ops on small CPU-resident inputs on the CPU: test the GPU kernels.
      if (backend !== 'webgpu') {
        outcome = await run(backend);
        return;
      }
      await useBackend('webgpu'); // registers the flag
      tf.env().set('WEBGPU_CPU_FORWARD', false);
      try {
        outcome = await run(backend);
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
