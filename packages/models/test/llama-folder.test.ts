// Loading Llama-family folders: sharded safetensors with an index, bf16 and
// f16 weights converted to float32, stored buffers that are ignored, and
// clear refusals of what is not supported or does not match.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  type TensorEntry,
  float32Entry,
  tf,
  toFloat32,
  useBackend,
  writeSafetensorsFile,
} from '@lorafleet/core';
import {
  type ModelConfig,
  type WeightMap,
  ModelConfigError,
  buildModel,
  familyOf,
  loadModel,
  modelConfigFromJson,
  writeModelFolder,
} from '../src/index.js';
import { loadReferenceLlama, referenceLlamaLogits } from './reference/llama-reference.js';
import { LLAMA_CASES, caseConfig, maxAbsDiff, randomIds, randomWeights } from './llama-fixtures.js';

let root = '';
let serial = 0;

beforeAll(async () => {
  await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'lorafleet-llama-folder-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A folder with config.json and the weights as `shards` files of one dtype (plus extra tensors). */
async function writeFolder(
  config: ModelConfig,
  weights: WeightMap,
  options: { shards: number; dtype: 'F32' | 'F16' | 'BF16'; extra?: Map<string, TensorEntry> },
): Promise<string> {
  const dir = join(root, `model-${serial++}`);
  const family = familyOf(config);
  const names = [...weights.keys()];
  const per = Math.ceil(names.length / options.shards);
  const weightMap: Record<string, string> = {};
  await mkdir(dir, { recursive: true });
  for (let s = 0; s < options.shards; s++) {
    const file =
      options.shards === 1
        ? 'model.safetensors'
        : `model-${String(s + 1).padStart(5, '0')}-of-${String(options.shards).padStart(5, '0')}.safetensors`;
    const tensors = new Map<string, TensorEntry>();
    for (const name of names.slice(s * per, (s + 1) * per)) {
      const w = weights.get(name)!;
      tensors.set(name, float32Entry(w.data, w.shape, options.dtype));
      weightMap[name] = file;
    }
    if (s === 0) for (const [k, v] of options.extra ?? []) tensors.set(k, v);
    await writeSafetensorsFile(join(dir, file), tensors, { format: 'pt' });
  }
  if (options.shards > 1) {
    const index = { metadata: { total_size: 0 }, weight_map: weightMap };
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
  }
  await writeFile(join(dir, 'config.json'), JSON.stringify(family.configToJson(config)));
  return dir;
}

describe('Llama-family folders', () => {
  const qwen3 = LLAMA_CASES.find((c) => c.json.model_type === 'qwen3')!;
  const llama = LLAMA_CASES[0]!;

  // transformers v5 writes rope_theta and the scaling into rope_parameters only.
  test.each(LLAMA_CASES)(
    "$label: transformers v5's rope_parameters read as the older rope_theta and rope_scaling",
    ({ json, label }) => {
      const { rope_theta, rope_scaling, ...rest } = json as Record<string, unknown>;
      const scaling = (rope_scaling ?? { rope_type: 'default' }) as Record<string, unknown>;
      const { type, ...fields } = scaling;
      const v5 = {
        ...rest,
        rope_parameters: { rope_type: type, ...fields, rope_theta: rope_theta ?? 10000 },
      };
      expect(modelConfigFromJson(v5, label)).toEqual(modelConfigFromJson(json, label));
    },
  );

  test('what this project writes reads the same through either rope layout', () => {
    for (const c of LLAMA_CASES) {
      const written = familyOf(caseConfig(c)).configToJson(caseConfig(c));
      const { rope_theta: _t, rope_scaling: _s, ...v5Only } = written;
      const { rope_parameters: _p, ...legacyOnly } = written;
      expect(modelConfigFromJson(v5Only, c.label)).toEqual(caseConfig(c));
      expect(modelConfigFromJson(legacyOnly, c.label)).toEqual(caseConfig(c));
    }
  });

  test("a saved folder keeps the source's other fields and writes transformers' float fields as floats", async () => {
    const gemma2 = LLAMA_CASES.find((c) => c.json.model_type === 'gemma2')!;
    const config = caseConfig(gemma2);
    const source = join(root, `model-${serial++}`);
    await mkdir(source, { recursive: true });
    const json = familyOf(config).configToJson(config);
    const stored = {
      torch_dtype: 'bfloat16',
      quantization_config: { quant_method: 'bitsandbytes' },
    };
    const kept = { pad_token_id: null, initializer_range: 1, auto_map: { AutoModel: 'x.Y' } };
    await writeFile(join(source, 'config.json'), JSON.stringify({ ...json, ...stored, ...kept }));
    const out = join(root, `model-${serial++}`);
    await writeModelFolder(out, config, randomWeights(config, 3), { sourceDir: source });
    const text = await readFile(join(out, 'config.json'), 'utf8');
    // transformers v5's strict Gemma2Config refuses 30 where it types float (softcaps, eps).
    expect(text).toMatch(/"final_logit_softcapping": \d+\.0,?\n/);
    expect(text).toMatch(/"initializer_range": 1\.0,?\n/);
    const written = JSON.parse(text) as Record<string, unknown>;
    expect(written).toMatchObject({ ...kept, dtype: 'float32', torch_dtype: 'float32' });
    expect(written).not.toHaveProperty('quantization_config');
    expect(modelConfigFromJson(written, 'written')).toEqual(config);
  });

  test('bf16 weights in 3 shards load as float32 and match the reference reading the same files', async () => {
    const config = caseConfig(qwen3);
    const weights = randomWeights(config, 5);
    const dir = await writeFolder(config, weights, { shards: 3, dtype: 'BF16' });
    const { model } = await loadModel(dir);
    try {
      // Each value is the bf16 rounding of the original, exactly as stored.
      for (const [name, v] of await model.readWeights()) {
        const w = weights.get(name)!;
        const rounded = toFloat32(float32Entry(w.data, w.shape, 'BF16'), name, dir);
        expect(maxAbsDiff(v.data, rounded), name).toBe(0);
      }
      const ids = randomIds(9, config.vocabSize, 1, 12)[0]!;
      const logits = tf.tidy(
        () => model.forward(tf.tensor2d(ids, [1, ids.length], 'int32')).dataSync() as Float32Array,
      );
      const expected = referenceLlamaLogits(await loadReferenceLlama(dir), ids);
      expect(maxAbsDiff(logits, expected)).toBeLessThan(1e-4);
    } finally {
      model.dispose();
    }
  });

  test('f16 weights, a stored copy of a tied head and old rotary buffers are accepted', async () => {
    const config = caseConfig(LLAMA_CASES[1]!); // tied head
    const weights = randomWeights(config, 6);
    const embed = weights.get('model.embed_tokens.weight')!;
    const extra = new Map<string, TensorEntry>([
      ['lm_head.weight', float32Entry(embed.data, embed.shape, 'F16')],
      ['model.layers.0.self_attn.rotary_emb.inv_freq', float32Entry(new Float32Array(4), [4])],
    ]);
    const dir = await writeFolder(config, weights, { shards: 1, dtype: 'F16', extra });
    const { model, config: loaded } = await loadModel(dir);
    expect(loaded).toEqual(config);
    expect(model.parameterCount()).toBe(
      [...weights.values()].reduce((n, w) => n + w.data.length, 0),
    );
    model.dispose();
  });

  test('missing, unexpected and wrongly shaped tensors are named, all at once', async () => {
    const config = caseConfig(llama);
    const weights = randomWeights(config, 7);
    weights.delete('model.layers.1.mlp.up_proj.weight');
    const q = weights.get('model.layers.0.self_attn.k_proj.weight')!;
    weights.set('model.layers.0.self_attn.k_proj.weight', {
      shape: [q.shape[1]!, q.shape[0]!],
      data: q.data,
    });
    weights.set('model.layers.0.self_attn.q_proj.bias', {
      shape: [32],
      data: new Float32Array(32),
    });
    const dir = await writeFolder(config, weights, { shards: 2, dtype: 'F32' });
    const loading = loadModel(dir);
    await expect(loading).rejects.toThrow(ModelConfigError);
    await expect(loading).rejects.toThrow(/missing tensor model\.layers\.1\.mlp\.up_proj\.weight/);
    await expect(loading).rejects.toThrow(
      /k_proj\.weight has shape \[32,16\], the config needs \[16,32\]/,
    );
    await expect(loading).rejects.toThrow(
      /unexpected tensor model\.layers\.0\.self_attn\.q_proj\.bias/,
    );
  });

  test('a shard the index lists but the folder lacks is named', async () => {
    const config = caseConfig(llama);
    const dir = await writeFolder(config, randomWeights(config, 8), { shards: 2, dtype: 'F32' });
    await rm(join(dir, 'model-00002-of-00002.safetensors'));
    await expect(loadModel(dir)).rejects.toThrow(
      /model-00002-of-00002\.safetensors: not found \(listed in model\.safetensors\.index\.json\)/,
    );
  });

  // As transformers' Phi-3 rotary embedding: a pass whose positions reach past
  // original_max_position_embeddings rotates all of them with the long factors, so the first
  // 32 positions of a 33-token pass differ from a 32-token pass over the same tokens.
  test("a row past LongRoPE's original context takes the long factors at every position", () => {
    const longrope = LLAMA_CASES.find((c) => c.label.includes('partial rotary 0.75'))!;
    const config = caseConfig(longrope);
    expect(config.contextLength).toBe(128); // max_position_embeddings, no longer cut at 32
    expect(config.rotarySwitch).toBe(32);
    const model = buildModel(config, randomWeights(config, 3));
    try {
      const ids = randomIds(5, config.vocabSize, 1, 33)[0]!;
      const logits = (T: number) =>
        tf.tidy(() => {
          const x = model.forward(tf.tensor2d(ids.slice(0, T), [1, T], 'int32'));
          return x.slice([0, 0, 0], [1, 32, config.vocabSize]).dataSync() as Float32Array;
        });
      const [short, long] = [logits(32), logits(33)];
      expect(maxAbsDiff(short, logits(32))).toBe(0);
      expect(maxAbsDiff(short, long)).toBeGreaterThan(1e-3);
    } finally {
      model.dispose();
    }
  });

  const refusals: [string, Record<string, unknown>, RegExp][] = [
    [
      'a rope type not listed',
      { rope_scaling: { rope_type: 'dynamic', factor: 4 } },
      /rope_scaling type "dynamic" is not supported \(supported: "default", "linear", "llama3", "yarn"\)/,
    ],
    ['another activation', { hidden_act: 'gelu' }, /hidden_act "gelu" is not supported/],
    [
      'heads that do not group',
      { num_key_value_heads: 3 },
      /num_attention_heads \(4\) must be a multiple of num_key_value_heads \(3\)/,
    ],
    [
      'Qwen2 sliding windows',
      { model_type: 'qwen2', use_sliding_window: true },
      /use_sliding_window true is not supported for qwen2/,
    ],
    [
      'an unknown model_type',
      { model_type: 'mixtral' },
      /model_type is "mixtral" \(Mixtral's mixture of experts is not computed; Mistral \(mistral\) is\); supported: gpt2, llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3_text, gemma3, granite, smollm3, phi3, olmo2, olmo3, exaone4, glm, glm4$/,
    ],
    [
      "Phi-3's residual dropout",
      { model_type: 'phi3', resid_pdrop: 0.1 },
      /resid_pdrop 0.1 is not supported \(only 0\)/,
    ],
    [
      'a partial rotation outside Phi-3',
      { partial_rotary_factor: 0.5 },
      /partial_rotary_factor 0.5 is not supported for llama \(only 1\)/,
    ],
    [
      'LongRoPE outside Phi-3',
      { rope_scaling: { type: 'longrope', short_factor: [1, 1], long_factor: [1, 1] } },
      /rope_scaling type "longrope" is not supported \(supported: "default", "linear", "llama3", "yarn"\)/,
    ],
    [
      'LongRoPE factors of the wrong length',
      {
        model_type: 'phi3',
        rope_scaling: { type: 'longrope', short_factor: [1, 1], long_factor: [1, 1, 1, 1] },
      },
      /rope_scaling.short_factor must list 4 positive numbers \(one per rotary frequency\)/,
    ],
    [
      'OLMo 1',
      { model_type: 'olmo' },
      /model_type is "olmo" \(OLMo 1's non-parametric LayerNorm .*OLMo 2 \(olmo2\) is\)/,
    ],
    [
      'Phi-1 and Phi-2',
      { model_type: 'phi' },
      /model_type is "phi" \(Phi-1 and Phi-2 .*Phi-3 and Phi-4 \(phi3\) are\)/,
    ],
    [
      'Granite 4 (hybrid Mamba)',
      { model_type: 'granitemoehybrid' },
      /model_type is "granitemoehybrid" \(Granite 4's Mamba layers and experts are not computed; dense Granite 3 \(granite\) is\)/,
    ],
    [
      'a Granite multiplier that is not positive',
      { model_type: 'granite', logits_scaling: 0 },
      /logits_scaling is 0, expected a positive number/,
    ],
    [
      'a multimodal Gemma 3 whose text model is not Gemma 3 text',
      { model_type: 'gemma3', text_config: { model_type: 'gemma2' } },
      /text_config's model_type is "gemma2", expected "gemma3_text"/,
    ],
    [
      'a multimodal Gemma 3 stored in 4 bits',
      {
        model_type: 'gemma3',
        text_config: {},
        quantization_config: { quant_method: 'bitsandbytes' },
      },
      /a quantized Gemma 3 multimodal folder is not supported: use the unquantized model \(with --base-dtype nf4 for QLoRA\)/,
    ],
    [
      "Gemma's exact gelu",
      { model_type: 'gemma', hidden_activation: 'gelu' },
      /hidden_activation "gelu" is not supported \(only "gelu_pytorch_tanh"\)/,
    ],
    [
      "Gemma's rope scaling",
      { model_type: 'gemma', rope_scaling: { rope_type: 'linear', factor: 2 } },
      /rope_scaling type "linear" is not supported for gemma \(only "default"\)/,
    ],
    [
      "Gemma 2's logit soft-capping on a Gemma 3",
      { model_type: 'gemma3_text', final_logit_softcapping: 30 },
      /final_logit_softcapping 30 is not supported \(only null\)/,
    ],
    [
      "EmbeddingGemma's bidirectional attention",
      { model_type: 'gemma3_text', use_bidirectional_attention: true },
      /use_bidirectional_attention true is not supported/,
    ],
    [
      "EXAONE 4's pattern as a string without layer_types",
      { model_type: 'exaone4', sliding_window_pattern: 'LLLG' },
      /sliding_window_pattern is "LLLG", expected a positive integer \(or give layer_types\)/,
    ],
    [
      'a layer type Gemma 3 does not have',
      {
        model_type: 'gemma3_text',
        num_hidden_layers: 2,
        layer_types: ['chunked_attention', 'full_attention'],
      },
      /layer_types: "chunked_attention" is not supported/,
    ],
    [
      'dynamic NTK in rope_parameters',
      { rope_parameters: { rope_type: 'dynamic', factor: 4, rope_theta: 10000 } },
      /rope_parameters type "dynamic" is not supported \(supported: "default", "linear", "llama3", "yarn"\)/,
    ],
    [
      'rope_parameters per layer type (Gemma 3)',
      {
        rope_parameters: {
          full_attention: { rope_type: 'default', rope_theta: 1e6 },
          sliding_attention: { rope_type: 'default', rope_theta: 1e4 },
        },
      },
      /rope_parameters per layer type \(full_attention, sliding_attention\) is not supported/,
    ],
  ];
  test.each(refusals)('%s is refused by name', (_what, patch, message) => {
    expect(() => modelConfigFromJson({ ...llama.json, ...patch }, 'config.json')).toThrow(message);
  });
});
