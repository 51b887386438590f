// The tfjs GPT-2 against an independent float64 GPT2LMHeadModel
// (test/reference/gpt2-reference.ts) on every compute backend: base logits,
// PEFT adapters loaded from a folder, merge/unmerge, and the causal-LM loss.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  type BackendName,
  Rng,
  exportAdapter,
  importAdapter,
  loadPeftAdapter,
  readSafetensorsFile,
  savePeftAdapter,
  tf,
  toFloat32,
  useBackend,
} from '@lorafleet/core';
import {
  type CausalLM,
  type Gpt2Config,
  type TokenBatch,
  type WeightMap,
  IGNORE_INDEX,
  addLora,
  countLossTokens,
  loadModel,
  saveByteTokenizerConfig,
  tokenNllSum,
  writeGpt2Folder,
} from '../src/index.js';
import {
  type ReferenceGpt2,
  loadReferenceAdapter,
  loadReferenceGpt2,
  referenceLogits,
  referenceMeanLoss,
  withConfig,
  withLora,
} from './reference/gpt2-reference.js';
import { tinyGpt2Config } from './fixtures/tiny-gpt2.js';

/**
 * Normals from core's uniform stream by a Box-Muller of our own (cosine only,
 * no cached pair): test data that does not go through the project's normal().
 */
function normals(seed: number): () => number {
  const rng = new Rng(seed);
  return () => Math.sqrt(-2 * Math.log(1 - rng.uniform())) * Math.cos(2 * Math.PI * rng.uniform());
}

/**
 * GPT2LMHeadModel's tensors with Hugging Face's names and Conv1D [in, out]
 * shapes, scaled so that logits are O(1) and attention is far from uniform.
 * Biases and LayerNorm gains are random, so mishandling them shows.
 */
function hfStyleWeights(c: Gpt2Config, seed: number): WeightMap {
  const randn = normals(seed);
  const C = c.nEmbd;
  const I = c.nInner ?? 4 * C;
  const weights: WeightMap = new Map();
  const put = (name: string, shape: number[], fill: () => number) => {
    const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, fill);
    weights.set(`transformer.${name}`, { shape, data });
  };
  const gain = () => 1 + 0.3 * randn();
  const small = () => 0.1 * randn();
  put('wte.weight', [c.vocabSize, C], () => 0.12 * randn());
  put('wpe.weight', [c.nPositions, C], () => 0.12 * randn());
  for (let l = 0; l < c.nLayer; l++) {
    put(`h.${l}.ln_1.weight`, [C], gain);
    put(`h.${l}.ln_1.bias`, [C], small);
    put(`h.${l}.attn.c_attn.weight`, [C, 3 * C], () => 0.25 * randn());
    put(`h.${l}.attn.c_attn.bias`, [3 * C], small);
    put(`h.${l}.attn.c_proj.weight`, [C, C], () => 0.15 * randn());
    put(`h.${l}.attn.c_proj.bias`, [C], small);
    put(`h.${l}.ln_2.weight`, [C], gain);
    put(`h.${l}.ln_2.bias`, [C], small);
    put(`h.${l}.mlp.c_fc.weight`, [C, I], () => 0.25 * randn());
    put(`h.${l}.mlp.c_fc.bias`, [I], small);
    put(`h.${l}.mlp.c_proj.weight`, [I, C], () => 0.15 * randn());
    put(`h.${l}.mlp.c_proj.bias`, [C], small);
  }
  put('ln_f.weight', [C], gain);
  put('ln_f.bias', [C], small);
  return weights;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

function projectLogits(model: CausalLM, ids: number[][]): Float32Array {
  const [B, T] = [ids.length, ids[0]!.length];
  return tf.tidy(() => {
    const logits = model.forward(tf.tensor2d(ids.flat(), [B, T], 'int32'));
    expect(logits.shape).toEqual([B, T, model.modelConfig.vocabSize]);
    return logits.dataSync() as Float32Array;
  });
}

function batchReferenceLogits(ref: ReferenceGpt2, ids: number[][]): Float64Array {
  const rows = ids.map((row) => referenceLogits(ref, row));
  const out = new Float64Array(rows.reduce((n, r) => n + r.length, 0));
  rows.reduce((at, r) => (out.set(r, at), at + r.length), 0);
  return out;
}

// Dropout non-zero so that forward() without options must be eval mode to match.
const BASE: Gpt2Config = tinyGpt2Config();

const CASES: { label: string; config: Gpt2Config; seed: number }[] = [
  { label: 'n_inner null (4C), eps 1e-5', config: BASE, seed: 11 },
  {
    label: 'n_inner 48, eps 1e-2',
    config: { ...BASE, nInner: 48, layerNormEpsilon: 1e-2 },
    seed: 12,
  },
];

const B = 2;
const T = 16;
const LOGIT_TOL = 1e-4;
const MERGE_TOL = 1e-5;
const FILE_FIELDS: Parameters<typeof exportAdapter>[2] = {
  targetModules: ['c_attn', 'c_proj'],
  bias: 'none',
  initLoraWeights: 'gaussian',
  baseModelNameOrPath: null,
  taskType: 'CAUSAL_LM',
};

function randomIds(seed: number, vocab: number): number[][] {
  const randn = normals(seed);
  return Array.from({ length: B }, () =>
    Array.from({ length: T }, () => Math.floor(Math.abs(randn() * 1e6)) % vocab),
  );
}

interface Fixture {
  dir: string;
  weights: WeightMap;
  ref: ReferenceGpt2;
  ids: number[][];
}

let root = '';
const fixtures = new Map<string, Fixture>();

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'lorafleet-gpt2-parity-'));
  for (const { label, config, seed } of CASES) {
    const dir = join(root, `model-${seed}`);
    const weights = hfStyleWeights(config, seed);
    await writeGpt2Folder(dir, config, weights);
    await saveByteTokenizerConfig(dir);
    const ref = await loadReferenceGpt2(dir);
    fixtures.set(label, { dir, weights, ref, ids: randomIds(seed + 100, config.vocabSize) });
  }
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe.each(CASES)('GPT-2 folder as written ($label)', ({ label }) => {
  test('model.safetensors holds exactly the Hugging Face tensors, values and shapes', async () => {
    const { dir, weights } = fixtures.get(label)!;
    const file = await readSafetensorsFile(join(dir, 'model.safetensors'));
    expect([...file.tensors.keys()].sort()).toEqual([...weights.keys()].sort());
    for (const [name, entry] of file.tensors) {
      const w = weights.get(name)!;
      expect(entry.shape, name).toEqual(w.shape);
      expect(maxAbsDiff(toFloat32(entry, name, dir), w.data), name).toBe(0);
    }
  });

  test('the test case is sensitive to layer_norm_epsilon and biases', () => {
    const { ref, ids } = fixtures.get(label)!;
    const logits = referenceLogits(ref, ids[0]!);
    const otherEps = ref.config.layerNormEpsilon === 1e-5 ? 1e-2 : 1e-5;
    const wrongEps = referenceLogits(withConfig(ref, { layerNormEpsilon: otherEps }), ids[0]!);
    expect(maxAbsDiff(logits, wrongEps)).toBeGreaterThan(10 * LOGIT_TOL);
    const noBias = new Map(ref.tensors);
    const key = 'transformer.h.1.mlp.c_fc.bias';
    const { shape } = ref.tensors.get(key)!;
    noBias.set(key, { shape, data: new Float64Array(shape[0]!) });
    const withoutBias = referenceLogits({ config: ref.config, tensors: noBias }, ids[0]!);
    expect(maxAbsDiff(logits, withoutBias)).toBeGreaterThan(10 * LOGIT_TOL);
  });
});

/** LoRA B values: non-zero (PEFT starts B at 0), small enough to keep logits O(1). */
function loraB(n: number, randn: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => 0.05 * randn());
}

/** A model with a random PEFT adapter (B non-zero), saved with savePeftAdapter. */
async function saveRandomAdapter(
  fixture: Fixture,
  dir: string,
  rslora: boolean,
  seed: number,
): Promise<{ liveDiff: number; adapterEffect: number }> {
  const { model } = await loadModel(fixture.dir);
  try {
    const settings = { r: 4, alpha: 8, dropout: 0, rslora };
    const layers = addLora(
      model.linears(),
      'default',
      settings,
      { kind: 'gaussian' },
      ['c_attn', 'c_proj'],
      seed,
    );
    expect(layers.length).toBe(3 * model.modelConfig.numLayers); // c_attn, attn.c_proj, mlp.c_proj
    const randn = normals(seed);
    for (const layer of layers) {
      const { b } = layer.activeAdapter!;
      tf.tidy(() => b.assign(tf.tensor2d(loraB(b.size, randn), b.shape)));
    }
    await savePeftAdapter(dir, exportAdapter(layers, 'default', FILE_FIELDS));
    // The live model against the reference built from what was saved.
    const ref = withLora(fixture.ref, await loadReferenceAdapter(dir));
    const live = projectLogits(model, fixture.ids);
    const expected = batchReferenceLogits(ref, fixture.ids);
    return {
      liveDiff: maxAbsDiff(live, expected),
      adapterEffect: maxAbsDiff(expected, batchReferenceLogits(fixture.ref, fixture.ids)),
    };
  } finally {
    model.dispose();
  }
}

/** Loads the model folder and the adapter folder as inference would. */
async function loadWithAdapter(fixture: Fixture, adapterDir: string): Promise<CausalLM> {
  const { model } = await loadModel(fixture.dir);
  importAdapter(model.linears(), await loadPeftAdapter(adapterDir), 'default');
  return model;
}

const BACKENDS: BackendName[] = ['cpu', 'wasm'];

describe.each(BACKENDS)('GPT-2 parity with Hugging Face on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  describe.each(CASES)('$label', ({ label, config: caseConfig, seed }) => {
    test('logits of a batch of 2 x 16 tokens match GPT2LMHeadModel', async () => {
      const fixture = fixtures.get(label)!;
      const { model, config } = await loadModel(fixture.dir);
      try {
        expect(config.arch).toEqual(caseConfig);
        const actual = projectLogits(model, fixture.ids);
        const expected = batchReferenceLogits(fixture.ref, fixture.ids);
        expect(maxAbsDiff(actual, expected)).toBeLessThan(LOGIT_TOL);
      } finally {
        model.dispose();
      }
    });

    for (const rslora of [false, true]) {
      test(`a PEFT adapter on c_attn and c_proj (rslora ${rslora}) matches PEFT`, async () => {
        const fixture = fixtures.get(label)!;
        const adapterDir = join(root, `${backend}-adapter-${seed}-${rslora}`);
        const saved = await saveRandomAdapter(fixture, adapterDir, rslora, seed + 7);
        expect(saved.adapterEffect).toBeGreaterThan(0.05); // the adapter changes the output
        expect(saved.liveDiff).toBeLessThan(LOGIT_TOL);

        const model = await loadWithAdapter(fixture, adapterDir);
        try {
          const ref = withLora(fixture.ref, await loadReferenceAdapter(adapterDir));
          const actual = projectLogits(model, fixture.ids);
          expect(maxAbsDiff(actual, batchReferenceLogits(ref, fixture.ids))).toBeLessThan(
            LOGIT_TOL,
          );
        } finally {
          model.dispose();
        }
      });
    }

    test('merging the adapter keeps the logits; unmerging restores the base weights', async () => {
      const fixture = fixtures.get(label)!;
      const adapterDir = join(root, `${backend}-merge-${seed}`);
      await saveRandomAdapter(fixture, adapterDir, false, seed + 9);
      const model = await loadWithAdapter(fixture, adapterDir);
      try {
        const adapted = model.linears().filter((l) => l.activeAdapter !== null);
        expect(adapted.length).toBe(3 * model.modelConfig.numLayers);
        const base = adapted.map((l) => (l.weight.dataSync() as Float32Array).slice());
        const unmerged = projectLogits(model, fixture.ids);

        for (const layer of adapted) layer.merge();
        expect(adapted.every((l) => l.merged)).toBe(true);
        const merged = projectLogits(model, fixture.ids);
        expect(maxAbsDiff(merged, unmerged)).toBeLessThan(MERGE_TOL);
        const ref = withLora(fixture.ref, await loadReferenceAdapter(adapterDir));
        expect(maxAbsDiff(merged, batchReferenceLogits(ref, fixture.ids))).toBeLessThan(LOGIT_TOL);
        // Merged weights are the reference's W + scaling (B A)^T.
        adapted.forEach((layer) => {
          const expected = ref.tensors.get(`${layer.name}.weight`)!.data;
          expect(maxAbsDiff(layer.weight.dataSync(), expected), layer.name).toBeLessThan(1e-6);
        });

        for (const layer of adapted) layer.unmerge();
        adapted.forEach((layer, i) => {
          expect(layer.merged).toBe(false);
          expect(maxAbsDiff(layer.weight.dataSync(), base[i]!), layer.name).toBeLessThan(MERGE_TOL);
        });
        expect(maxAbsDiff(projectLogits(model, fixture.ids), unmerged)).toBeLessThan(MERGE_TOL);
        // Without the adapter, the base model's logits again.
        for (const layer of adapted) layer.setActive(null);
        const plain = projectLogits(model, fixture.ids);
        expect(maxAbsDiff(plain, batchReferenceLogits(fixture.ref, fixture.ids))).toBeLessThan(
          LOGIT_TOL,
        );
      } finally {
        model.dispose();
      }
    });

    test('mean token loss with ignored labels matches the shifted cross-entropy', async () => {
      const fixture = fixtures.get(label)!;
      const labels = fixture.ids.map((row) => [...row]);
      for (const [b, t] of [
        [0, 0],
        [0, 3],
        [0, 15],
        [1, 1],
        [1, 7],
        [1, 8],
      ] as const) {
        labels[b]![t] = IGNORE_INDEX;
      }
      const batch: TokenBatch = {
        ids: Int32Array.from(fixture.ids.flat()),
        labels: Int32Array.from(labels.flat()),
        batchSize: B,
        seqLen: T,
      };
      const expected = referenceMeanLoss(fixture.ref, fixture.ids, labels);
      expect(expected.tokens).toBe(B * (T - 1) - 5); // label 0 of row 0 is never predicted
      expect(countLossTokens(batch)).toBe(expected.tokens);
      const { model } = await loadModel(fixture.dir);
      try {
        const sum = tf.tidy(() => tokenNllSum(model, batch).dataSync()[0]!);
        const loss = sum / countLossTokens(batch);
        expect(Math.abs(loss - expected.loss) / expected.loss).toBeLessThan(1e-5);
      } finally {
        model.dispose();
      }
    });
  });
});
