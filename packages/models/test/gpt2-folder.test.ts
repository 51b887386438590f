// Loading a GPT-2 folder: the variants Hugging Face checkpoints come in load,
// and every broken folder is refused with a message that names the problem.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  type TensorEntry,
  float32Entry,
  readSafetensorsFile,
  tf,
  useBackend,
  writeSafetensorsFile,
} from '@lorafleet/core';
import {
  type Gpt2Config,
  ModelConfigError,
  gpt2ConfigToJson,
  loadModel,
  randomGpt2Weights,
  saveByteTokenizerConfig,
  writeGpt2Folder,
} from '../src/index.js';
import { tinyGpt2Config } from './fixtures/tiny-gpt2.js';

const CONFIG: Gpt2Config = tinyGpt2Config();
const WEIGHTS = randomGpt2Weights(CONFIG, 5, 0.2);
const IDS = [
  [3, 1, 4, 1, 5, 9, 2, 6],
  [2, 7, 1, 8, 2, 8, 1, 8],
];

let root = '';
let serial = 0;

/** A fresh, loadable folder (config, weights, byte tokenizer). */
async function modelFolder(): Promise<string> {
  const dir = join(root, `model-${serial++}`);
  await writeGpt2Folder(dir, CONFIG, WEIGHTS);
  await saveByteTokenizerConfig(dir);
  return dir;
}

/** Rewrites model.safetensors in place, as a hand-edited or foreign checkpoint. */
async function editWeights(
  dir: string,
  edit: (tensors: Map<string, TensorEntry>) => Map<string, TensorEntry> | void,
): Promise<void> {
  const path = join(dir, 'model.safetensors');
  const { tensors } = await readSafetensorsFile(path);
  await writeSafetensorsFile(path, edit(tensors) ?? tensors, { format: 'pt' });
}

async function writeConfig(dir: string, json: Record<string, unknown>): Promise<void> {
  await writeFile(join(dir, 'config.json'), JSON.stringify(json, null, 2));
}

async function logitsOf(dir: string): Promise<Float32Array> {
  const { model } = await loadModel(dir);
  try {
    return tf.tidy(() => {
      const ids = tf.tensor2d(IDS.flat(), [IDS.length, IDS[0]!.length], 'int32');
      return model.forward(ids).dataSync() as Float32Array;
    });
  } finally {
    model.dispose();
  }
}

describe('loading a GPT-2 folder', () => {
  let expected: Float32Array = new Float32Array();

  beforeAll(async () => {
    await useBackend('cpu');
    root = await mkdtemp(join(tmpdir(), 'lorafleet-gpt2-folder-'));
    expected = await logitsOf(await modelFolder());
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test('a folder without config.json names the missing file', async () => {
    const dir = await modelFolder();
    await rm(join(dir, 'config.json'));
    const loading = loadModel(dir);
    await expect(loading).rejects.toThrow(ModelConfigError);
    await expect(loading).rejects.toThrow(`${join(dir, 'config.json')}: not found`);
  });

  test('a Hub id, a cache entry, a file and an absent folder each get their own message', async () => {
    const hubId = 'lorafleet-test-owner/no-such-model';
    await expect(loadModel(hubId)).rejects.toThrow(
      `${hubId}: no such folder. It looks like a Hugging Face Hub id: lorafleet reads local folders, so download it first (\`hf download ${hubId} --local-dir no-such-model\``,
    );
    const cache = join(root, 'models--owner--name');
    await mkdir(join(cache, 'snapshots', '0123abcd'), { recursive: true });
    await expect(loadModel(cache)).rejects.toThrow(
      `${cache} is a Hugging Face cache entry: its files are in snapshots/<revision>/, so give that folder (here: ${join(cache, 'snapshots', '0123abcd')})`,
    );
    const file = join(root, 'weights.bin');
    await writeFile(file, 'x');
    await expect(loadModel(file)).rejects.toThrow(`${file}: a file, not a folder`);
    await expect(loadModel(join(root, 'absent'))).rejects.toThrow(
      `${join(root, 'absent')}: no such folder`,
    );
  });

  test('n_embd not divisible by n_head is refused, naming both values', async () => {
    const dir = await modelFolder();
    await writeConfig(dir, gpt2ConfigToJson({ ...CONFIG, nEmbd: 30 }));
    const loading = loadModel(dir);
    await expect(loading).rejects.toThrow(ModelConfigError);
    await expect(loading).rejects.toThrow(/n_embd \(30\).*divisible by n_head \(4\)/);
  });

  test('an unknown model_type is refused by name, with the supported ones', async () => {
    const dir = await modelFolder();
    await writeConfig(dir, gpt2ConfigToJson(CONFIG, { model_type: 'falcon' }));
    const loading = loadModel(dir);
    await expect(loading).rejects.toThrow(ModelConfigError);
    await expect(loading).rejects.toThrow(
      /model_type is "falcon"; supported: gpt2, llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3_text/,
    );
  });

  test('a missing tensor is named', async () => {
    const dir = await modelFolder();
    await editWeights(dir, (t) => void t.delete('transformer.h.1.mlp.c_fc.bias'));
    await expect(loadModel(dir)).rejects.toThrow(
      /missing tensor transformer\.h\.1\.mlp\.c_fc\.bias/,
    );
  });

  test('an unknown extra tensor is named', async () => {
    const dir = await modelFolder();
    const extra = float32Entry(new Float32Array(32), [32]);
    await editWeights(dir, (t) => void t.set('transformer.h.0.attn.q_norm.weight', extra));
    await expect(loadModel(dir)).rejects.toThrow(
      /unexpected tensor transformer\.h\.0\.attn\.q_norm\.weight/,
    );
  });

  test('a wrongly shaped tensor is named with its shape and the expected one', async () => {
    const dir = await modelFolder();
    // nn.Linear's [out, in] instead of Conv1D's [in, out].
    const transposed = float32Entry(new Float32Array(96 * 32), [96, 32]);
    await editWeights(dir, (t) => void t.set('transformer.h.0.attn.c_attn.weight', transposed));
    await expect(loadModel(dir)).rejects.toThrow(
      /transformer\.h\.0\.attn\.c_attn\.weight has shape \[96, ?32\], the config needs \[32, ?96\]/,
    );
  });

  test('several problems are reported together', async () => {
    const dir = await modelFolder();
    await editWeights(dir, (t) => {
      t.delete('transformer.ln_f.bias');
      t.set('transformer.h.0.mlp.c_fc.bias', float32Entry(new Float32Array(64), [64]));
    });
    const loading = loadModel(dir);
    await expect(loading).rejects.toThrow(/missing tensor transformer\.ln_f\.bias/);
    await expect(loading).rejects.toThrow(/transformer\.h\.0\.mlp\.c_fc\.bias has shape \[64\]/);
  });

  test('names without "transformer." (GPT2Model checkpoints) load to the same model', async () => {
    const dir = await modelFolder();
    await editWeights(dir, (t) => {
      const stripped = new Map<string, TensorEntry>();
      for (const [name, entry] of t) stripped.set(name.replace(/^transformer\./, ''), entry);
      expect(
        stripped.has('h.0.attn.c_attn.weight') && !stripped.has('transformer.wte.weight'),
      ).toBe(true);
      return stripped;
    });
    const logits = await logitsOf(dir);
    expect(logits).toEqual(expected);
  });

  test("old checkpoints' attn.bias / masked_bias buffers are ignored", async () => {
    const P = CONFIG.nPositions;
    const causal = Float32Array.from({ length: P * P }, (_, i) =>
      i % P <= Math.floor(i / P) ? 1 : 0,
    );
    const dir = await modelFolder();
    await editWeights(dir, (t) => {
      t.set('transformer.h.0.attn.bias', float32Entry(causal, [1, 1, P, P]));
      t.set('transformer.h.1.attn.masked_bias', float32Entry(new Float32Array([-1e4]), []));
    });
    expect(await logitsOf(dir)).toEqual(expected);

    const bare = await modelFolder();
    await editWeights(bare, (t) => {
      const stripped = new Map<string, TensorEntry>();
      for (const [name, entry] of t) stripped.set(name.replace(/^transformer\./, ''), entry);
      stripped.set('h.0.attn.bias', float32Entry(causal, [1, 1, P, P]));
      return stripped;
    });
    expect(await logitsOf(bare)).toEqual(expected);
  });

  test('a tensor given with and without the "transformer." prefix is refused, naming both', async () => {
    const dir = await modelFolder();
    await editWeights(dir, (tensors) => {
      const wte = tensors.get('transformer.wte.weight')!;
      tensors.set('wte.weight', float32Entry(new Float32Array(wte.bytes.length / 4), wte.shape));
    });
    await expect(loadModel(dir)).rejects.toThrow(
      /wte\.weight and transformer\.wte\.weight are the same tensor/,
    );
  });

  test('an lm_head.weight of the wrong shape is refused; a matching one is ignored (tied)', async () => {
    const dir = await modelFolder();
    const wte = WEIGHTS.get('transformer.wte.weight')!;
    await editWeights(dir, (tensors) => {
      tensors.set('lm_head.weight', float32Entry(wte.data, wte.shape));
    });
    const tied = await logitsOf(dir);
    expect(tied.length).toBe(2 * 8 * 257);
    await editWeights(dir, (tensors) => {
      tensors.set('lm_head.weight', float32Entry(new Float32Array(5), [5]));
    });
    await expect(loadModel(dir)).rejects.toThrow(
      /lm_head\.weight has shape \[5\], the config needs \[257,32\]/,
    );
  });

  test('a non-numeric layer_norm_epsilon is refused', async () => {
    const dir = await modelFolder();
    await writeConfig(dir, { ...gpt2ConfigToJson(CONFIG), layer_norm_epsilon: 'small' });
    await expect(loadModel(dir)).rejects.toThrow(/layer_norm_epsilon is "small"/);
  });
});
