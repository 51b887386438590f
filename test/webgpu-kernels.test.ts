// Every kernel that training and generation dispatch has a webgpu kernel,
// checked without a GPU: record the kernel names a GPT-2 LoRA step, a full
// fine-tuning step, an evaluation and generation dispatch on wasm and cpu,
// and look each up in the webgpu registry (importing tfjs-backend-webgpu
// registers its kernels without an adapter). Then run the training steps on
// webgpu over Dawn's null adapter, which validates every shader and pipeline
// (it runs none): no WebGPU error may come up.
import { afterAll, describe, expect, it } from 'vitest';
import {
  ATTN_STATS,
  type BackendName,
  TrainableParameters,
  loadWebGpuKernels,
  lossAndGradsAsync,
  releaseWebGpu,
  tf,
  useBackend,
  webGpuErrors,
} from '@lorafleet/core';
import {
  type Gpt2Config,
  type LlamaConfig,
  type TokenBatch,
  Gpt2Model,
  LlamaModel,
  IGNORE_INDEX,
  addLora,
  evaluateLoss,
  generateBatch,
  randomGpt2Weights,
  randomLlamaWeights,
  tokenNllSum,
} from '../packages/models/src/index.js';
import { tinyLlamaConfig } from '../packages/models/test/fixtures/tiny-llama.js';

// Dropout on everywhere (training uses it), a context short enough to make
// generation slide past it.
const CONFIG: Gpt2Config = {
  vocabSize: 97,
  nPositions: 12,
  nEmbd: 32,
  nLayer: 2,
  nHead: 4,
  nInner: null,
  layerNormEpsilon: 1e-5,
  embdPdrop: 0.1,
  attnPdrop: 0.1,
  residPdrop: 0.1,
};

function batch(): TokenBatch {
  const [B, T] = [2, 10];
  const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % CONFIG.vocabSize);
  const labels = ids.slice();
  labels[0] = IGNORE_INDEX;
  labels[13] = IGNORE_INDEX;
  return { ids, labels, batchSize: B, seqLen: T };
}

function model(): Gpt2Model {
  return new Gpt2Model(CONFIG, randomGpt2Weights(CONFIG, 5));
}

/** The LoRA model of a worker: adapters with dropout on every linear layer. */
async function loraModel(): Promise<{ model: Gpt2Model; params: TrainableParameters }> {
  const m = model();
  const layers = await addLora(
    m.linears(),
    'default',
    { r: 4, alpha: 8, dropout: 0.1, rslora: true },
    { kind: 'kaiming' },
    ['c_attn', 'c_proj', 'c_fc'],
    1,
  );
  return { model: m, params: TrainableParameters.fromLoraLayers(layers) };
}

async function kernelsOf(f: () => tf.TensorContainer | void | Promise<unknown>): Promise<string[]> {
  const info = await tf.profile(async () => {
    await f();
    return [];
  });
  return info.kernelNames;
}

/** What each workload dispatches on `backend`, by workload. */
async function record(backend: BackendName): Promise<Map<string, Set<string>>> {
  await useBackend(backend);
  const out = new Map<string, Set<string>>();
  const add = (what: string, names: string[]) => {
    const set = out.get(what) ?? new Set<string>();
    // tf.profile also lists custom-gradient scopes (logSoftmax__op): keep the
    // names that dispatched through the kernel registry. The project's own cpu
    // and wasm kernels (LoraFleet*: fused loss, gelu_new, LayerNorm) are left
    // out: their ops dispatch them only where registered and take WGSL kernels
    // or tfjs ops on webgpu, which the next test runs.
    names
      .filter((n) => tf.getKernel(n, backend) !== undefined && !n.startsWith('LoraFleet'))
      .forEach((n) => set.add(n));
    out.set(what, set);
  };
  const b = batch();
  {
    const { model: m, params } = await loraModel();
    add(
      'LoRA step',
      await kernelsOf(() => {
        const { grads } = params.lossAndGrads(() => tokenNllSum(m, b, { training: true, seed: 3 }));
        params.write(params.read().map((v, i) => v - 1e-3 * grads[i]!));
      }),
    );
    add('evaluation', await kernelsOf(() => evaluateLoss(m, [b])));
    add(
      'merge and unmerge',
      await kernelsOf(() => {
        for (const l of m.linears()) {
          l.merge();
          l.unmerge();
        }
      }),
    );
    m.dispose();
  }
  {
    const m = model();
    const params = new TrainableParameters(m.namedWeights());
    add(
      'full fine-tuning step',
      await kernelsOf(() => {
        params.lossAndGrads(() => tokenNllSum(m, b, { training: true, seed: 4 }));
      }),
    );
    add(
      'generation',
      await kernelsOf(async () => {
        const sampling = { temperature: 0.8, topK: 5, topP: 0.9, seed: 1 };
        // Two prompts of different lengths (left padding, KV cache), then one
        // that outgrows the context (sliding window).
        await generateBatch(
          m,
          [
            [1, 2, 3],
            [4, 5],
          ],
          { ...sampling, maxNewTokens: 3, batchSize: 2 },
        );
        await generateBatch(m, [Array.from({ length: 11 }, (_, i) => i + 1)], {
          ...sampling,
          maxNewTokens: 3,
          overflow: 'slide',
        });
      }),
    );
    m.dispose();
  }
  return out;
}

describe('webgpu kernels for training and generation', () => {
  afterAll(async () => {
    await useBackend('wasm');
    releaseWebGpu();
  });

  it('every kernel dispatched on wasm and cpu is registered for webgpu', async () => {
    const recorded = new Map<string, Set<string>>();
    for (const backend of ['wasm', 'cpu'] as const) {
      for (const [what, names] of await record(backend)) {
        const set = recorded.get(what) ?? new Set<string>();
        names.forEach((n) => set.add(n));
        recorded.set(what, set);
      }
    }
    // The recording is not vacuous: the workloads' characteristic kernels.
    expect([...recorded.get('LoRA step')!]).toEqual(
      expect.arrayContaining(['BatchMatMul', 'Softmax', 'GatherV2', 'SplitV', 'Multiply']),
    );
    expect([...recorded.get('full fine-tuning step')!]).toContain('UnsortedSegmentSum');
    expect(recorded.get('generation')!.size).toBeGreaterThan(5);

    await loadWebGpuKernels();
    const missing: string[] = [];
    for (const [what, names] of recorded) {
      for (const name of names) {
        if (tf.getKernel(name, 'webgpu') === undefined) missing.push(`${name} (${what})`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('the LoRA and full fine-tuning steps and evaluation run on webgpu (Dawn null adapter) without a WebGPU error', async () => {
    await useBackend('webgpu', { dawnFlags: ['backend=null'] });
    tf.env().set('WEBGPU_CPU_FORWARD', false);
    try {
      const b = batch();
      const { model: m, params } = await loraModel();
      const lora = await lossAndGradsAsync(params, () =>
        tokenNllSum(m, b, { training: true, seed: 3 }),
      );
      expect(lora.grads.length).toBe(params.size);
      const loss = tf.tidy(() => tokenNllSum(m, b));
      await loss.data();
      loss.dispose();
      m.dispose();

      const full = model();
      const all = new TrainableParameters(full.namedWeights());
      const before = tf.memory().numTensors;
      const step = await lossAndGradsAsync(all, () =>
        tokenNllSum(full, b, { training: true, seed: 4 }),
      );
      expect(step.grads.length).toBe(all.size);
      expect(tf.memory().numTensors).toBe(before);
      full.dispose();
      await new Promise((resolve) => setTimeout(resolve, 50)); // errors arrive as events
      expect(webGpuErrors()).toEqual([]);
    } finally {
      tf.env().set('WEBGPU_CPU_FORWARD', true);
    }
  });

  it('GPT-2 and Llama attention take the fused kernels in training and evaluation, dropout and sliding windows included', async () => {
    await useBackend('webgpu', { dawnFlags: ['backend=null'] });
    const b = batch();
    const fused = async (f: () => tf.Tensor) =>
      (await kernelsOf(() => tf.dispose(f()))).includes(ATTN_STATS);
    const gpt2 = model(); // attn_pdrop 0.1
    expect(await fused(() => tokenNllSum(gpt2, b))).toBe(true); // evaluation: no dropout
    expect(await fused(() => tokenNllSum(gpt2, b, { training: true, seed: 1 }))).toBe(true); // dropout in the kernels
    gpt2.dispose();
    const llama = (c: Partial<LlamaConfig>) => {
      const config = tinyLlamaConfig(CONFIG.vocabSize, c);
      return new LlamaModel(config, randomLlamaWeights(config, 5));
    };
    for (const [config, expected] of [
      [{}, true],
      [{ slidingWindow: 4 }, true], // shorter than the batch's 10 tokens: the kernels' window
      [{ slidingWindow: 10 }, true],
      [{ attentionDropout: 0.1 }, true], // evaluation
    ] as const) {
      const m = llama(config);
      expect(await fused(() => tokenNllSum(m, b)), JSON.stringify(config)).toBe(expected);
      m.dispose();
    }
    const dropping = llama({ attentionDropout: 0.1 });
    expect(await fused(() => tokenNllSum(dropping, b, { training: true, seed: 1 }))).toBe(true);
    dropping.dispose();
    expect(webGpuErrors()).toEqual([]);
  });
});
