// A bitsandbytes 4-bit folder (transformers' save_pretrained of a model
// loaded with BitsAndBytesConfig(load_in_4bit=True,
// bnb_4bit_quant_type="nf4")), written here tensor by tensor as
// QuantState.as_dict(packed=True) lays it out, with and without double
// quantization (src/testing/bnb-4bit-folder.ts): the model loads with its NF4 bytes as they are (nf4) or
// dequantized (f32), equal to the same weights quantized here; other
// quantization configs are refused by name.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensorsFile, tf, useBackend, writeSafetensorsFile } from '@lorafleet/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CausalLM,
  buildModel,
  loadModel,
  modelConfigFromJson,
  randomModelWeights,
} from '../src/index.js';
import { BNB_4BIT_QUANTIZATION, writeBnb4bitFolder } from '../src/testing/index.js';

const LLAMA = {
  model_type: 'llama',
  vocab_size: 40,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  tie_word_embeddings: false,
};
const QUANTIZATION = BNB_4BIT_QUANTIZATION;

async function logits(model: CausalLM): Promise<Float32Array> {
  const ids = tf.tensor2d([[1, 5, 9, 2, 7, 3, 30, 11]], undefined, 'int32');
  const out = tf.tidy(() => model.logits(model.hidden(ids).reshape([8, -1]) as tf.Tensor2D));
  const values = (await out.data()) as Float32Array;
  tf.dispose([ids, out]);
  return values;
}

let root: string;
beforeAll(async () => {
  await useBackend('wasm');
  root = await mkdtemp(join(tmpdir(), 'lorafleet-bnb-'));
});
afterAll(() => rm(root, { recursive: true, force: true }));

describe('a bitsandbytes 4-bit (NF4) model folder', () => {
  const config = modelConfigFromJson(LLAMA, 'test');
  const weights = randomModelWeights(config, 7);

  it.each([false, true])(
    'loads as stored (double quantization %s), nf4 or dequantized to f32',
    async (double) => {
      const dir = join(root, `bnb-${double}`);
      const decoded = await writeBnb4bitFolder(dir, LLAMA, weights, { doubleQuant: double });
      const reference = buildModel(config, decoded); // the decoded weights, in f32
      const nf4 = await loadModel(dir, { baseDtype: 'nf4' });
      const f32 = await loadModel(dir);
      expect(nf4.config.bnbNf4).toBe(true);
      expect(nf4.model.linears().every((l) => l.baseDtype === 'nf4')).toBe(true);
      // lm_head is left unquantized, as transformers does: it loads as it is stored.
      const want = await logits(reference);
      expect(await logits(nf4.model)).toEqual(want);
      expect(await logits(f32.model)).toEqual(want);
      if (!double) {
        // Without double quantization the bytes are the ones this project's own nf4 makes.
        const packed = buildModel(config, weights, 'nf4');
        expect(await logits(packed)).toEqual(want);
        packed.dispose();
      }
      [reference, nf4.model, f32.model].forEach((m) => m.dispose());
    },
  );

  it.each([
    ['GPTQ', { quant_method: 'gptq', bits: 4 }, /quant_method "gptq"/],
    ['8-bit', { ...QUANTIZATION, load_in_4bit: false, load_in_8bit: true }, /bitsandbytes 8-bit/],
    ['FP4', { ...QUANTIZATION, bnb_4bit_quant_type: 'fp4' }, /bitsandbytes 4-bit "fp4"/],
  ])('refuses a %s quantization_config by name, with the fix', (_label, quantization, message) => {
    const load = () => modelConfigFromJson({ ...LLAMA, quantization_config: quantization }, 'cfg');
    expect(load).toThrow(message);
    expect(load).toThrow(/use the unquantized model \(and --base-dtype nf4 for QLoRA\)/);
  });

  it('names a weight whose quantization state does not fit (blocksize 128)', async () => {
    const dir = join(root, 'bnb-128');
    await writeBnb4bitFolder(dir, LLAMA, weights);
    const file = await readSafetensorsFile(join(dir, 'model.safetensors'));
    const key = 'model.layers.1.mlp.down_proj.weight.quant_state.bitsandbytes__nf4';
    const state = JSON.parse(new TextDecoder().decode(file.tensors.get(key)!.bytes));
    const bytes = new TextEncoder().encode(JSON.stringify({ ...state, blocksize: 128 }));
    file.tensors.set(key, { dtype: 'U8', shape: [bytes.length], bytes });
    await writeSafetensorsFile(join(dir, 'model.safetensors'), file.tensors, { format: 'pt' });
    await expect(loadModel(dir)).rejects.toThrow(
      /model\.layers\.1\.mlp\.down_proj\.weight: blocksize 128, not 64/,
    );
  });

  it('refuses a GPT-2 4-bit folder, whose Conv1D weights bitsandbytes stores transposed', () => {
    const gpt2 = {
      model_type: 'gpt2',
      n_embd: 8,
      n_layer: 1,
      n_head: 2,
      vocab_size: 20,
      n_positions: 8,
    };
    expect(() =>
      modelConfigFromJson({ ...gpt2, quantization_config: QUANTIZATION }, 'cfg'),
    ).toThrow(/bitsandbytes 4-bit GPT-2 folder is not supported/);
  });
});
