// A model built with its linear layers' W packed (loadModel(dir, { baseDtype
// }), --base-dtype) equals one built in f32 and packed afterwards, and the
// device never holds those W in f32 while it is built: what lets a model too
// large for wasm's 4 GiB heap in f32 load as nf4. Both families (GPT-2's
// fan-in-fan-out layers are quantized as [out, in], as bitsandbytes does).
import { type BaseDtype, tf, useBackend } from '@lorafleet/core';
import { beforeAll, describe, expect, test } from 'vitest';
import { buildModel, modelConfigFromJson, randomModelWeights, storeBasesAs } from '../src/index.js';

const CONFIGS = {
  gpt2: { model_type: 'gpt2', vocab_size: 40, n_positions: 16, n_embd: 32, n_layer: 2, n_head: 2 },
  llama: {
    model_type: 'llama',
    vocab_size: 40,
    hidden_size: 32,
    intermediate_size: 96,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    num_key_value_heads: 1,
  },
};

async function logits(model: ReturnType<typeof buildModel>): Promise<Float32Array> {
  const ids = tf.tensor2d([[1, 5, 9, 2, 7, 3]], undefined, 'int32');
  const out = tf.tidy(() => model.logits(model.hidden(ids).reshape([6, -1]) as tf.Tensor2D));
  const values = (await out.data()) as Float32Array;
  tf.dispose([ids, out]);
  return values;
}

/** The most bytes of tensors alive at once while `f` runs (tfjs counts them as it tracks each new tensor). */
function peakBytes<T>(f: () => T): { result: T; peak: number } {
  const engine = tf.engine() as unknown as {
    trackTensor(t: unknown, backend: unknown): void;
    state: { numBytes: number };
  };
  const track = engine.trackTensor;
  let peak = engine.state.numBytes;
  engine.trackTensor = function (t, backend) {
    track.call(this, t, backend);
    peak = Math.max(peak, engine.state.numBytes);
  };
  try {
    return { result: f(), peak };
  } finally {
    engine.trackTensor = track;
  }
}

describe('packing W as the layers are built', () => {
  beforeAll(async () => {
    await useBackend('wasm');
  });

  for (const [family, json] of Object.entries(CONFIGS)) {
    for (const dtype of ['nf4', 'bf16'] as BaseDtype[]) {
      test(`${family} as ${dtype}: the same model as packing after an f32 build, never f32 on the device`, async () => {
        const config = modelConfigFromJson(json, family);
        const weights = randomModelWeights(config, 1);
        const later = buildModel(config, weights);
        await storeBasesAs(later, dtype);
        const start = tf.memory().numBytes;
        const { result: model, peak } = peakBytes(() => buildModel(config, weights, dtype));
        const built = tf.memory().numBytes - start;
        expect(model.linears().every((l) => l.baseDtype === dtype)).toBe(true);
        // The largest linear W in f32: more than the build ever held beyond what it keeps
        // (packing after an f32 build holds every W in f32 at once: 7x more here).
        const largest = Math.max(...model.linears().map((l) => 4 * l.inFeatures * l.outFeatures));
        expect(peak - start - built).toBeLessThan(largest);
        expect(await logits(model)).toEqual(await logits(later));
        model.dispose();
        later.dispose();
      });
    }
  }
});
