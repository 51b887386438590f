// The tfjs Llama family against an independent float64 reference
// (test/reference/llama-reference.ts, written from transformers' modeling
// files) on every compute backend: logits, a PEFT adapter on
// q_proj/v_proj/down_proj saved and loaded, a merged model saved and loaded,
// and the causal-LM loss, on a tiny random config for each feature.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  type BackendName,
  exportAdapter,
  importAdapter,
  loadPeftAdapter,
  savePeftAdapter,
  tf,
  useBackend,
} from '@lorafleet/core';
import {
  type CausalLM,
  type TokenBatch,
  IGNORE_INDEX,
  addLora,
  countLossTokens,
  loadModel,
  tokenNllSum,
  writeModelFolder,
} from '../src/index.js';
import { loadReferenceAdapter } from './reference/gpt2-reference.js';
import {
  type ReferenceLlama,
  type ReferenceLlamaConfig,
  loadReferenceLlama,
  referenceLlamaLogits,
  referenceLlamaLoss,
  withLlamaConfig,
  withLlamaLora,
} from './reference/llama-reference.js';
import {
  LLAMA_CASES,
  caseConfig,
  maxAbsDiff,
  normals,
  randomIds,
  randomWeights,
} from './llama-fixtures.js';

const B = 2;
const T = 16;
const LOGIT_TOL = 1e-4;
const TARGETS = ['q_proj', 'v_proj', 'down_proj'];
const targetsOf = (label: string) => LLAMA_CASES.find((c) => c.label === label)!.targets ?? TARGETS;

/** What each case exists to test: the reference without any one of them must differ. */
const FEATURE: Record<string, Partial<ReferenceLlamaConfig>[]> = {
  'llama, GQA 4:2, untied head': [{ tied: true }],
  'llama, tied head, llama3 rope scaling': [{ ropeScaling: null }],
  'qwen2, q/k/v bias, one key/value head, linear rope scaling': [{ qkvBias: false }],
  'qwen3, q/k norms, head_dim 12, tied head': [{ qkNorm: false }],
  'mistral, sliding window 5': [{ slidingWindow: null }],
  'gemma, 1 + weight norms, scaled embeddings, GeGLU, head_dim 12': [{ gemma: false }],
  'gemma2, sandwich norms, soft-capped scores and logits, a sliding and a full layer': [
    { sandwich: false },
    { attnSoftcap: null },
    { finalSoftcap: null },
    { slidingWindow: null },
    { queryScalar: null },
  ],
  'granite, embedding, attention and residual multipliers, logits scaling': [
    { embeddingMultiplier: 1 },
    { attentionMultiplier: null },
    { residualMultiplier: 1 },
    { logitsScaling: 1 },
  ],
  'smollm3, a layer without rotary embedding, tied head by default': [{ ropeLayers: null }],
  'phi3, fused qkv_proj and gate_up_proj, GQA 4:2, sliding window 5': [{ slidingWindow: null }],
  'exaone4, a sliding layer and a full one without rotary embedding, q/k norms per head': [
    { ropeLayers: null }, // the full layer rotated
    { slidingWindow: null },
    { sandwich: false },
    { qkNorm: false },
  ],
  'olmo3, a sliding layer and a full one with YaRN, q/k norms over all heads': [
    { slidingWindow: null },
    { ropeScaling: null },
    // The sliding layer rotated as the full one (scaled), not with rope_theta alone.
    { localTheta: null },
    { sandwich: false },
  ],
  'olmo2, norms after attention and MLP only, q/k norms over all heads, GQA 4:2': [
    { sandwich: false },
    { qkNorm: false },
    { qkNormAll: false },
  ],
  'qwen3, yarn rope scaling with mscale, q/k norms': [
    { ropeScaling: null },
    // The frequencies alone, and the attention factor alone.
    {
      ropeScaling: {
        rope_type: 'yarn',
        factor: 4,
        original_max_position_embeddings: 8,
        attention_factor: 1,
      },
    },
    {
      ropeScaling: {
        rope_type: 'yarn',
        factor: 1,
        original_max_position_embeddings: 8,
        attention_factor: 1.0269,
      },
    },
  ],
  'glm, adjacent-pair rotation of half of each head, fused gate_up_proj, q/k/v bias': [
    { ropePairs: false },
    { qkvBias: false },
    { rotaryDim: 8 },
  ],
  "glm4, norms of both branches' outputs under GLM-4's names, no bias": [
    { sandwich: false },
    { ropePairs: false },
  ],
  'phi3, longrope, partial rotary 0.75, tied head': [
    { ropeScaling: null },
    { rotaryDim: 4 }, // 4 of 8 dims rotate, not 6
    // The attention factor alone.
    { ropeScaling: { type: 'longrope', short_factor: [1, 1.5, 3], attention_factor: 1 } },
  ],
  'phi3, longrope past its original context of 8 (long factors)': [
    // The short factors where the long ones belong.
    {
      ropeScaling: { type: 'longrope', short_factor: [1, 1.2, 2, 4], long_factor: [1, 1.2, 2, 4] },
    },
  ],
  'gemma3_text, sandwich norms, q/k norms, a sliding and a full layer, two rope bases': [
    { sandwich: false },
    { qkNorm: false },
    { queryScalar: null },
    { slidingLayers: [true, true] },
    { slidingWindow: null },
    { localTheta: null },
  ],
};

interface Fixture {
  label: string;
  dir: string;
  ref: ReferenceLlama;
  ids: number[][];
}

let root = '';
const fixtures = new Map<string, Fixture>();

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'lorafleet-llama-parity-'));
  for (const c of LLAMA_CASES) {
    const dir = join(root, `model-${c.seed}`);
    const config = caseConfig(c);
    await writeModelFolder(dir, config, randomWeights(config, c.seed));
    const ref = await loadReferenceLlama(dir);
    const ids = randomIds(c.seed + 100, config.vocabSize, B, T);
    fixtures.set(c.label, { label: c.label, dir, ref, ids });
  }
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function projectLogits(model: CausalLM, ids: number[][]): Float32Array {
  return tf.tidy(() => {
    const logits = model.forward(tf.tensor2d(ids.flat(), [ids.length, ids[0]!.length], 'int32'));
    return logits.dataSync() as Float32Array;
  });
}

function referenceBatch(ref: ReferenceLlama, ids: number[][]): Float64Array {
  const rows = ids.map((row) => referenceLlamaLogits(ref, row));
  const out = new Float64Array(rows.reduce((n, r) => n + r.length, 0));
  rows.reduce((at, r) => (out.set(r, at), at + r.length), 0);
  return out;
}

describe.each(LLAMA_CASES)('the test case $label', ({ label }) => {
  test('is sensitive to the feature it tests', () => {
    const { ref, ids } = fixtures.get(label)!;
    for (const feature of FEATURE[label]!) {
      const without = withLlamaConfig(ref, feature);
      const gap = maxAbsDiff(
        referenceLlamaLogits(ref, ids[0]!),
        referenceLlamaLogits(without, ids[0]!),
      );
      expect(gap, JSON.stringify(feature)).toBeGreaterThan(100 * LOGIT_TOL);
    }
  });
});

/** Adds a PEFT adapter (B non-zero) on TARGETS, saves it; returns the live model's gap to the reference. */
async function saveRandomAdapter(fixture: Fixture, dir: string, seed: number) {
  const { model } = await loadModel(fixture.dir);
  try {
    const settings = { r: 4, alpha: 8, dropout: 0, rslora: false };
    const layers = await addLora(
      model.linears(),
      'default',
      settings,
      { kind: 'gaussian' },
      targetsOf(fixture.label),
      seed,
    );
    expect(layers.length).toBe(3 * model.modelConfig.numLayers);
    const randn = normals(seed);
    for (const layer of layers) {
      const { b } = layer.activeAdapter!;
      tf.tidy(() =>
        b.assign(
          tf.tensor2d(
            Float32Array.from({ length: b.size }, () => 0.1 * randn()),
            b.shape,
          ),
        ),
      );
    }
    const adapter = exportAdapter(layers, 'default', {
      targetModules: targetsOf(fixture.label),
      bias: 'none',
      initLoraWeights: 'gaussian',
      baseModelNameOrPath: null,
      taskType: 'CAUSAL_LM',
    });
    expect(adapter.config.fanInFanOut).toBe(false);
    await savePeftAdapter(dir, adapter);
    const ref = withLlamaLora(fixture.ref, await loadReferenceAdapter(dir));
    const expected = referenceBatch(ref, fixture.ids);
    return {
      ref,
      liveDiff: maxAbsDiff(projectLogits(model, fixture.ids), expected),
      adapterEffect: maxAbsDiff(expected, referenceBatch(fixture.ref, fixture.ids)),
    };
  } finally {
    model.dispose();
  }
}

const BACKENDS: BackendName[] = ['cpu', 'wasm'];

describe.each(BACKENDS)('Llama family parity with Hugging Face on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  describe.each(LLAMA_CASES)('$label', ({ label, seed }) => {
    test('logits of a batch of 2 x 16 tokens match the reference', async () => {
      const fixture = fixtures.get(label)!;
      const { model } = await loadModel(fixture.dir);
      try {
        const gap = maxAbsDiff(
          projectLogits(model, fixture.ids),
          referenceBatch(fixture.ref, fixture.ids),
        );
        expect(gap).toBeLessThan(LOGIT_TOL);
      } finally {
        model.dispose();
      }
    });

    test('a PEFT adapter on q_proj, v_proj, down_proj (Phi-3: its fused layers), live and loaded from its folder', async () => {
      const fixture = fixtures.get(label)!;
      const adapterDir = join(root, `${backend}-adapter-${seed}`);
      const saved = await saveRandomAdapter(fixture, adapterDir, seed + 7);
      expect(saved.adapterEffect).toBeGreaterThan(0.05);
      expect(saved.liveDiff).toBeLessThan(LOGIT_TOL);
      const { model } = await loadModel(fixture.dir);
      try {
        importAdapter(model.linears(), await loadPeftAdapter(adapterDir), 'default');
        const gap = maxAbsDiff(
          projectLogits(model, fixture.ids),
          referenceBatch(saved.ref, fixture.ids),
        );
        expect(gap).toBeLessThan(LOGIT_TOL);
      } finally {
        model.dispose();
      }
    });

    test('the merged model, live and saved as a folder, matches the reference with the adapter', async () => {
      const fixture = fixtures.get(label)!;
      const adapterDir = join(root, `${backend}-merge-adapter-${seed}`);
      const saved = await saveRandomAdapter(fixture, adapterDir, seed + 9);
      const expected = referenceBatch(saved.ref, fixture.ids);
      const loaded = await loadModel(fixture.dir);
      const mergedDir = join(root, `${backend}-merged-${seed}`);
      try {
        importAdapter(loaded.model.linears(), await loadPeftAdapter(adapterDir), 'default');
        for (const layer of loaded.model.linears().filter((l) => l.activeAdapter)) layer.merge();
        expect(maxAbsDiff(projectLogits(loaded.model, fixture.ids), expected)).toBeLessThan(
          LOGIT_TOL,
        );
        await writeModelFolder(mergedDir, loaded.config, await loaded.model.readWeights());
      } finally {
        loaded.model.dispose();
      }
      const merged = await loadModel(mergedDir);
      try {
        expect(merged.config).toEqual(loaded.config);
        expect(maxAbsDiff(projectLogits(merged.model, fixture.ids), expected)).toBeLessThan(
          LOGIT_TOL,
        );
        // The file itself, read by the reference, is the merged model.
        const fromFile = referenceBatch(await loadReferenceLlama(mergedDir), fixture.ids);
        expect(maxAbsDiff(fromFile, expected)).toBeLessThan(LOGIT_TOL);
      } finally {
        merged.model.dispose();
      }
    });

    test('mean token loss with ignored labels matches the shifted cross-entropy', async () => {
      const fixture = fixtures.get(label)!;
      const labels = fixture.ids.map((row) => [...row]);
      for (const [b, t] of [
        [0, 3],
        [1, 1],
        [1, 8],
      ] as const)
        labels[b]![t] = IGNORE_INDEX;
      const batch: TokenBatch = {
        ids: Int32Array.from(fixture.ids.flat()),
        labels: Int32Array.from(labels.flat()),
        batchSize: B,
        seqLen: T,
      };
      const expected = referenceLlamaLoss(fixture.ref, fixture.ids, labels);
      expect(countLossTokens(batch)).toBe(expected.tokens);
      const { model } = await loadModel(fixture.dir);
      try {
        const sum = tf.tidy(() => tokenNllSum(model, batch).dataSync()[0]!);
        const loss = sum / expected.tokens;
        expect(Math.abs(loss - expected.loss) / expected.loss).toBeLessThan(1e-5);
      } finally {
        model.dispose();
      }
    });
  });
});
