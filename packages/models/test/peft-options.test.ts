// PEFT's LoRA options on real files: each option changes what is trained and
// what the adapter file holds (PEFT's key names and config fields); the file
// loads back to the same logits; merged equals unmerged within 1e-4; and an
// independent reference agrees: reference/peft_merge.py (numpy, PEFT's math,
// no code shared) merges the saved adapter into the saved base in float64,
// and the float64 Llama reference (reference/llama-reference.ts) runs the
// result. Tiny random Qwen2 folders (q/k/v biases, untied head, 2 layers).
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  loadPeftAdapter,
  readSafetensorsFile,
  savePeftAdapter,
  tf,
  useBackend,
} from '@lorafleet/core';
import {
  type CausalLM,
  type PeftLoraOptions,
  addPeftLora,
  exportPeftAdapter,
  importPeftAdapter,
  loadModel,
  modelConfigFromJson,
  randomModelWeights,
  writeModelFolder,
} from '../src/index.js';
import { maxAbsDiff, normals, randomIds, randomWeights } from './llama-fixtures.js';
import { loadReferenceGpt2, referenceLogits } from './reference/gpt2-reference.js';
import { loadReferenceLlama, referenceLlamaLogits } from './reference/llama-reference.js';

const run = promisify(execFile);
const PEFT_MERGE = join(import.meta.dirname, 'reference', 'peft_merge.py');
/** Debian's python3 with python3-numpy (scripts/test-machine.sh installs it). */
const PYTHON = '/usr/bin/python3';
const TOL = 1e-4;
const QWEN2 = {
  model_type: 'qwen2',
  vocab_size: 61,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 32,
  rms_norm_eps: 1e-5,
  tie_word_embeddings: false,
};
const GPT2 = {
  model_type: 'gpt2',
  vocab_size: 61,
  n_embd: 32,
  n_layer: 2,
  n_head: 4,
  n_positions: 32,
};
const BASE: PeftLoraOptions = { r: 4, alpha: 8, dropout: 0, rslora: false, targets: ['q_proj'] };
const L = 'model.layers';

interface Case {
  label: string;
  /** The base model: the Qwen2 folder unless 'gpt2' (Conv1D layers, fan_in_fan_out, tied head). */
  family?: 'gpt2';
  options: Partial<PeftLoraOptions>;
  /** Keys (without "base_model.model.") the adapter file must hold; all of them when `exact`. */
  keys: string[];
  exact?: boolean;
  /** adapter_config.json fields it must have. */
  fields: Record<string, unknown>;
}

const pair = (m: string) => [`${m}.lora_A.weight`, `${m}.lora_B.weight`];
const CASES: Case[] = [
  {
    label: 'LoRA on the embedding (lora_embedding_A/B)',
    options: { targets: ['embed_tokens', 'q_proj'] },
    keys: ['model.embed_tokens.lora_embedding_A', 'model.embed_tokens.lora_embedding_B'],
    fields: { target_modules: ['embed_tokens', 'q_proj'] },
  },
  {
    label: 'target_modules as a regex, rank_pattern and alpha_pattern',
    options: {
      targets: '.*\\.(q_proj|down_proj)',
      rankPattern: { down_proj: 2 },
      alphaPattern: { q_proj: 16 },
    },
    keys: [0, 1].flatMap((i) => [
      ...pair(`${L}.${i}.self_attn.q_proj`),
      ...pair(`${L}.${i}.mlp.down_proj`),
    ]),
    exact: true,
    fields: {
      target_modules: '.*\\.(q_proj|down_proj)',
      rank_pattern: { down_proj: 2 },
      alpha_pattern: { q_proj: 16 },
    },
  },
  {
    label: 'layers_to_transform with layers_pattern',
    options: { targets: ['q_proj', 'v_proj'], layersToTransform: [1], layersPattern: ['layers'] },
    keys: [...pair(`${L}.1.self_attn.q_proj`), ...pair(`${L}.1.self_attn.v_proj`)],
    exact: true,
    fields: { layers_to_transform: [1], layers_pattern: 'layers' },
  },
  {
    label: 'bias "all"',
    options: { targets: ['v_proj'], bias: 'all' },
    keys: [
      `${L}.0.self_attn.q_proj.bias`,
      `${L}.0.self_attn.v_proj.base_layer.bias`,
      `${L}.1.self_attn.k_proj.bias`,
    ],
    fields: { bias: 'all' },
  },
  {
    label: 'bias "lora_only"',
    options: { targets: ['q_proj'], bias: 'lora_only' },
    keys: [0, 1].flatMap((i) => [
      ...pair(`${L}.${i}.self_attn.q_proj`),
      `${L}.${i}.self_attn.q_proj.base_layer.bias`,
    ]),
    exact: true,
    fields: { bias: 'lora_only' },
  },
  {
    label: 'modules_to_save (the head and the final norm)',
    options: { targets: ['q_proj'], modulesToSave: ['lm_head', 'model.norm'] },
    keys: ['lm_head.weight', 'model.norm.weight'],
    fields: { modules_to_save: ['lm_head', 'model.norm'] },
  },
  {
    label: 'DoRA (use_dora): a magnitude per output of each adapted module',
    options: { targets: ['q_proj', 'down_proj'], useDora: true },
    keys: [0, 1].flatMap((i) => [
      ...pair(`${L}.${i}.self_attn.q_proj`),
      `${L}.${i}.self_attn.q_proj.lora_magnitude_vector`,
      ...pair(`${L}.${i}.mlp.down_proj`),
      `${L}.${i}.mlp.down_proj.lora_magnitude_vector`,
    ]),
    exact: true,
    fields: { use_dora: true },
  },
  {
    label: 'GPT-2: DoRA on Conv1D layers (fan_in_fan_out)',
    family: 'gpt2',
    options: { targets: ['c_attn', 'c_fc'], useDora: true },
    keys: [0, 1].flatMap((i) => [
      ...pair(`transformer.h.${i}.attn.c_attn`),
      `transformer.h.${i}.attn.c_attn.lora_magnitude_vector`,
      ...pair(`transformer.h.${i}.mlp.c_fc`),
      `transformer.h.${i}.mlp.c_fc.lora_magnitude_vector`,
    ]),
    exact: true,
    fields: { use_dora: true, fan_in_fan_out: true },
  },
  {
    label: 'GPT-2: bias "all" (LayerNorm biases too) and modules_to_save ln_f',
    family: 'gpt2',
    options: { targets: ['c_attn'], bias: 'all', modulesToSave: ['ln_f'] },
    keys: [
      ...pair('transformer.h.0.attn.c_attn'),
      'transformer.h.0.attn.c_attn.base_layer.bias',
      'transformer.h.1.mlp.c_fc.bias',
      'transformer.h.1.ln_2.bias',
      'transformer.ln_f.weight',
      'transformer.ln_f.bias',
    ],
    fields: { bias: 'all', fan_in_fan_out: true, modules_to_save: ['ln_f'] },
  },
];

let root = '';
let baseDir = '';
let gpt2Dir = '';
const ids = randomIds(5, QWEN2.vocab_size, 2, 12);

beforeAll(async () => {
  await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'lorafleet-peft-options-'));
  baseDir = join(root, 'base');
  const config = modelConfigFromJson(QWEN2, 'qwen2 test config');
  await writeModelFolder(baseDir, config, randomWeights(config, 31));
  gpt2Dir = join(root, 'gpt2');
  const gpt2 = modelConfigFromJson(GPT2, 'gpt2 test config');
  // transformers' initialisation (the Llama fixture's scales assume [out, in] weights).
  await writeModelFolder(gpt2Dir, gpt2, randomModelWeights(gpt2, 32));
});

/** The float64 reference of a folder's family: logits [T, V] of one row. */
async function referenceOf(dir: string, family: Case['family']) {
  if (family === 'gpt2') {
    const ref = await loadReferenceGpt2(dir);
    return (row: readonly number[]) => referenceLogits(ref, row);
  }
  const ref = await loadReferenceLlama(dir);
  return (row: readonly number[]) => referenceLlamaLogits(ref, row);
}

afterAll(() => rm(root, { recursive: true, force: true }));

function logitsOf(model: CausalLM): Float32Array {
  return tf.tidy(() => {
    const x = tf.tensor2d(ids.flat(), [ids.length, ids[0]!.length], 'int32');
    return model.forward(x).dataSync() as Float32Array;
  });
}

/** Adds the adapters and moves every trainable value off its initialisation (B = 0, A = 0 ...). */
async function trainedModel(dir: string, options: PeftLoraOptions, seed: number) {
  const { model } = await loadModel(dir);
  const trained = await addPeftLora(model, 'default', options, { kind: 'kaiming' }, seed);
  const randn = normals(seed);
  const values = trained.params.read();
  trained.params.write(values.map((v) => v + 0.2 * randn()));
  return { model, trained };
}

async function fileKeys(dir: string): Promise<string[]> {
  const file = await readSafetensorsFile(join(dir, 'adapter_model.safetensors'));
  return [...file.tensors.keys()].map((k) => k.replace(/^base_model\.model\./, '')).sort();
}

describe.each(CASES)('PEFT option: $label', (c) => {
  test('changes what is trained and written; reloads, merges and matches the reference', async () => {
    const options = { ...BASE, ...c.options };
    const base = c.family === 'gpt2' ? gpt2Dir : baseDir;
    const plain = await trainedModel(
      base,
      c.family === 'gpt2' ? { ...BASE, targets: ['c_attn'] } : BASE,
      7,
    );
    const { model, trained } = await trainedModel(base, options, 7);
    const dir = join(root, c.label.replace(/\W+/g, '-'));
    try {
      // What is trained differs from plain q_proj LoRA.
      const names = (t: typeof trained) => t.params.slots.map((s) => `${s.name}:${s.size}`);
      expect(names(trained)).not.toEqual(names(plain.trained));
      const unmerged = logitsOf(model);
      expect(unmerged.every(Number.isFinite)).toBe(true);

      const adapter = await exportPeftAdapter(trained, 'default', options, {
        initLoraWeights: true,
        baseModelNameOrPath: base,
        taskType: 'CAUSAL_LM',
      });
      await savePeftAdapter(dir, adapter);
      const keys = await fileKeys(dir);
      if (c.exact) expect(keys).toEqual([...c.keys].sort());
      else for (const k of c.keys) expect(keys).toContain(k);
      const json = JSON.parse(await readFile(join(dir, 'adapter_config.json'), 'utf8'));
      expect(json).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8, ...c.fields });

      // The file loads back into a fresh model to the same logits.
      const { model: fresh } = await loadModel(base);
      try {
        importPeftAdapter(fresh, await loadPeftAdapter(dir), 'default');
        expect(maxAbsDiff(logitsOf(fresh), unmerged)).toBeLessThan(1e-5);
        // Merged equals unmerged.
        for (const l of fresh.linears()) if (l.activeAdapter) l.merge();
        for (const e of fresh.embeddings()) if (e.activeAdapter) e.merge();
        expect(maxAbsDiff(logitsOf(fresh), unmerged)).toBeLessThan(TOL);
      } finally {
        fresh.dispose();
      }

      // The independent reference: PEFT's merge in numpy, the float64 model on its output.
      const merged = join(dir, 'peft-merged');
      await run(PYTHON, [PEFT_MERGE, base, dir, merged]);
      const reference = await referenceOf(merged, c.family);
      const V = QWEN2.vocab_size;
      ids.forEach((row, b) => {
        const mine = unmerged.subarray(b * row.length * V, (b + 1) * row.length * V);
        expect(maxAbsDiff(reference(row), mine)).toBeLessThan(TOL);
      });
      // ... and the base model alone is far from it (the check can fail).
      const without = await referenceOf(base, c.family);
      expect(maxAbsDiff(without(ids[0]!), unmerged.subarray(0, 12 * V))).toBeGreaterThan(100 * TOL);
    } finally {
      model.dispose();
      plain.model.dispose();
    }
  }, 120_000);
});
