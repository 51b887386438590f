// Gemma 3's multimodal folders (model_type gemma3): the config as
// transformers reads it, the text model loaded from transformers' own save
// and from the 4.5x layout, the vision tower copied through a save as
// stored, and a new random folder with transformers' tensor names and shapes.
// The logits, a trained adapter in PEFT and a merged folder in transformers
// are test/transformers-parity.test.ts' (families.json's gemma3).
import { mkdir, mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readSafetensorsFile, toFloat32, useBackend, writeSafetensorsFile } from '@lorafleet/core';
import { referenceJson } from '@lorafleet/core/testing';
import {
  type LlamaConfig,
  loadModel,
  modelConfigFromJson,
  modelLinearModules,
  randomModelWeights,
  readModelConfig,
  savedTargets,
  familyOf,
  writeModelFolder,
} from '../src/index.js';

/** google/gemma-3-4b-it's config.json: text_config holds only what differs from Gemma3TextConfig. */
const GEMMA3_4B = {
  architectures: ['Gemma3ForConditionalGeneration'],
  boi_token_index: 255999,
  eoi_token_index: 256000,
  eos_token_id: [1, 106],
  image_token_index: 262144,
  initializer_range: 0.02,
  mm_tokens_per_image: 256,
  model_type: 'gemma3',
  text_config: {
    hidden_size: 2560,
    intermediate_size: 10240,
    model_type: 'gemma3_text',
    num_hidden_layers: 34,
    rope_scaling: { factor: 8.0, rope_type: 'linear' },
    sliding_window: 1024,
  },
  torch_dtype: 'bfloat16',
  transformers_version: '4.50.0.dev0',
  vision_config: {
    hidden_size: 1152,
    image_size: 896,
    intermediate_size: 4304,
    model_type: 'siglip_vision_model',
    num_attention_heads: 16,
    num_hidden_layers: 27,
    patch_size: 14,
    vision_use_head: false,
  },
};

/** A tiny one: a sliding and a full layer, an untied head, a vision tower with its pooling head. */
const TINY = {
  model_type: 'gemma3',
  text_config: {
    vocab_size: 300,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    head_dim: 16,
    sliding_window: 8,
    layer_types: ['sliding_attention', 'full_attention'],
    max_position_embeddings: 64,
  },
  vision_config: {
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    image_size: 28,
    patch_size: 14,
  },
  tie_word_embeddings: false,
  mm_tokens_per_image: 4,
  boi_token_index: 297,
  eoi_token_index: 298,
  image_token_index: 299,
};

interface Reference {
  text: Record<string, unknown>;
  tensors?: Record<string, number[]>;
}

let root = '';
/** transformers' save of TINY, and what it reports of it. */
let saved = '';
let reference: Reference;

beforeAll(async () => {
  await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'lorafleet-gemma3-'));
  saved = join(root, 'transformers');
  reference = referenceJson<Reference>('gemma3_folder', { config: TINY, save: saved });
}, 120_000);

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** The fields gemma3_folder.py reports, from the project's config. */
function asTransformers(c: LlamaConfig): Record<string, unknown> {
  const scaling = c.ropeScaling as { type: string; factor: number } | null;
  return {
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    max_position_embeddings: c.maxPositions,
    rms_norm_eps: c.rmsNormEps,
    query_pre_attn_scalar: c.queryPreAttnScalar,
    sliding_window: c.slidingWindow,
    layer_types: c.slidingLayers!.map((s) => (s ? 'sliding_attention' : 'full_attention')),
    rope_parameters: {
      sliding_attention: { rope_type: 'default', rope_theta: c.localRopeTheta },
      full_attention: {
        rope_type: scaling?.type ?? 'default',
        ...(scaling ? { factor: scaling.factor } : {}),
        rope_theta: c.ropeTheta,
      },
    },
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    tie_word_embeddings: c.tieWordEmbeddings,
  };
}

const tensorsOf = async (dir: string) =>
  (await readSafetensorsFile(join(dir, 'model.safetensors'))).tensors;

describe('the multimodal Gemma 3 (gemma3): its text model', () => {
  test("gemma-3-4b-it's config reads as transformers reads it (Gemma3TextConfig's defaults for what text_config leaves out)", () => {
    const config = modelConfigFromJson(GEMMA3_4B, 'config.json');
    expect(config.modelType).toBe('gemma3');
    const theirs = referenceJson<Reference>('gemma3_folder', { config: GEMMA3_4B, save: null });
    expect(asTransformers(config.arch as LlamaConfig)).toEqual(theirs.text);
    // Its decoder's modules, by the paths PEFT gives them in Gemma3ForConditionalGeneration.
    expect(modelLinearModules(config)[0]!.name).toBe(
      'model.language_model.layers.0.self_attn.q_proj',
    );
    expect(familyOf(config).embeddingModules(config)[0]!.name).toBe(
      'model.language_model.embed_tokens',
    );
  }, 60_000);

  test("transformers' save loads; the text model's tensors as stored, the tower never read", async () => {
    const { config, model } = await loadModel(saved);
    try {
      expect(asTransformers(config.arch as LlamaConfig)).toEqual(reference.text);
      const stored = await tensorsOf(saved);
      const weights = await model.readWeights();
      // Every stored text tensor, by its module path, and nothing of the tower.
      const text = Object.keys(reference.tensors!).filter((n) => n.startsWith('language_model.'));
      expect(weights.size).toBe(text.length);
      const q = 'language_model.model.layers.1.self_attn.q_proj.weight';
      expect(weights.get('model.language_model.layers.1.self_attn.q_proj.weight')!.data).toEqual(
        toFloat32(stored.get(q)!, q, saved),
      );
      expect(weights.get('lm_head.weight')!.data).toEqual(
        toFloat32(stored.get('language_model.lm_head.weight')!, 'lm_head', saved),
      );
    } finally {
      model.dispose();
    }
  });

  test('the layout transformers 4.5x saved (model.language_model.*, lm_head, model.vision_tower.*) loads the same weights', async () => {
    const dir = join(root, 'v4-layout');
    await mkdir(dir, { recursive: true });
    const renamed = new Map(
      [...(await tensorsOf(saved))].map(([name, entry]) => [
        name
          .replace(/^language_model\.lm_head\./, 'lm_head.')
          .replace(/^language_model\.model\./, 'model.language_model.')
          .replace(/^(vision_tower|multi_modal_projector)\./, 'model.$1.'),
        entry,
      ]),
    );
    expect([...renamed.keys()].some((n) => n.startsWith('model.vision_tower.'))).toBe(true);
    await writeSafetensorsFile(join(dir, 'model.safetensors'), renamed, { format: 'pt' });
    await writeFile(join(dir, 'config.json'), await readFile(join(saved, 'config.json')));
    const [a, b] = [await loadModel(saved), await loadModel(dir)];
    try {
      expect(await b.model.readWeights()).toEqual(await a.model.readWeights());
    } finally {
      a.model.dispose();
      b.model.dispose();
    }
  });

  test("a saved folder (merge, full fine-tuning) holds the tower as the source stored it, under transformers' names", async () => {
    const { config, model } = await loadModel(saved);
    const weights = await model.readWeights();
    model.dispose();
    const out = join(root, 'resaved');
    await writeModelFolder(out, config, weights, { sourceDir: saved });
    const [before, after] = [await tensorsOf(saved), await tensorsOf(out)];
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    for (const [name, entry] of before) {
      expect(toFloat32(after.get(name)!, name, out), name).toEqual(toFloat32(entry, name, saved));
    }
    // It reads as the same config, key for key (extract compares the two folders' so).
    expect(JSON.stringify(await readModelConfig(out))).toBe(JSON.stringify(config));
    const json = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
    expect(json).toMatchObject({
      architectures: ['Gemma3ForConditionalGeneration'],
      model_type: 'gemma3',
      vision_config: TINY.vision_config,
      image_token_index: 299,
      tie_word_embeddings: false,
    });
    // Without the folder it came from, there is no tower to write: refused, nothing written.
    await expect(writeModelFolder(join(root, 'orphan'), config, weights)).rejects.toThrow(
      /written with its vision tower, copied from the folder the model was loaded from, and none was given/,
    );
  });

  test('from a sharded folder, a save reads again only the shards that hold the tower', async () => {
    const dir = join(root, 'sharded');
    await mkdir(dir, { recursive: true });
    const stored = await tensorsOf(saved);
    const isText = (name: string) => name.startsWith('language_model.');
    const shards = { 'text.safetensors': isText, 'tower.safetensors': (n: string) => !isText(n) };
    const weightMap: Record<string, string> = {};
    for (const [file, holds] of Object.entries(shards)) {
      const tensors = new Map([...stored].filter(([name]) => holds(name)));
      await writeSafetensorsFile(join(dir, file), tensors, { format: 'pt' });
      for (const name of tensors.keys()) weightMap[name] = file;
    }
    const index = { metadata: {}, weight_map: weightMap };
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    await writeFile(join(dir, 'config.json'), await readFile(join(saved, 'config.json')));
    const { config, model } = await loadModel(dir);
    const weights = await model.readWeights();
    model.dispose();
    // The text model's shard is gone: the save must not need it.
    await rm(join(dir, 'text.safetensors'));
    const out = join(root, 'from-sharded');
    await writeModelFolder(out, config, weights, { sourceDir: dir });
    const after = await tensorsOf(out);
    for (const [name, entry] of stored)
      expect(toFloat32(after.get(name)!, name, out), name).toEqual(toFloat32(entry, name, saved));
  });

  test("a new random folder (lorafleet init) has transformers' tensor names and shapes, and loads", async () => {
    const config = modelConfigFromJson(TINY, 'tiny');
    const dir = join(root, 'random');
    await writeModelFolder(dir, config, randomModelWeights(config, 3));
    const shapes = Object.fromEntries(
      [...(await tensorsOf(dir))].map(([name, entry]) => [name, entry.shape]),
    );
    expect(shapes).toEqual(reference.tensors);
    const { model } = await loadModel(dir);
    model.dispose();
  });

  test("a saved adapter lists the modules it adapts by path, so that PEFT leaves the tower's q_proj alone", () => {
    const config = modelConfigFromJson(TINY, 'tiny');
    const chosen = modelLinearModules(config).filter((m) => m.name.endsWith('q_proj'));
    const scope = familyOf(config).targetScope;
    expect(savedTargets(['q_proj'], chosen, scope)).toEqual([
      'model.language_model.layers.0.self_attn.q_proj',
      'model.language_model.layers.1.self_attn.q_proj',
    ]);
    // A regex stays the user's; a model without a scope keeps PEFT's short names.
    expect(savedTargets('.*q_proj', chosen, scope)).toBe('.*q_proj');
    expect(savedTargets(['q_proj'], chosen)).toEqual(['q_proj']);
  });
});
