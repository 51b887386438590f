// Padding a micro-batch to its longest row (batchesOf: padToLongest) instead
// of to --seq-len: the same loss and the same update as the whole padded
// batch, on GPT-2, a Llama and a Gemma 2 (sliding window, soft-capped scores)
// with LoRA on every linear layer, on cpu and wasm. Right padding after a
// row's last real token reaches none of its logits (causal attention) and
// carries no label, so only float rounding may differ.
import { useBackend } from '@lorafleet/core';
import { type Batch, IGNORE_INDEX, padToLongest } from '@lorafleet/data';
import { describe, expect, it } from 'vitest';
import { loraStep } from './helpers.js';

const CONFIGS: Record<string, object> = {
  gpt2: {
    ...{ model_type: 'gpt2', vocab_size: 64, n_positions: 64, n_embd: 32, n_layer: 2, n_head: 2 },
    ...{ embd_pdrop: 0, attn_pdrop: 0, resid_pdrop: 0 }, // masks are drawn per shape
  },
  llama: {
    model_type: 'llama',
    vocab_size: 64,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 64,
    tie_word_embeddings: false,
  },
  gemma2: {
    model_type: 'gemma2',
    vocab_size: 64,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 8,
    max_position_embeddings: 64,
    sliding_window: 6,
    attn_logit_softcapping: 50,
    final_logit_softcapping: 30,
  },
};

const [B, T] = [4, 48];

/** Rows of 9 to 21 real tokens, right-padded to T with id 0; the first third of each row unlabelled (a prompt). */
function paddedBatch(): Batch {
  const lengths = Int32Array.from([13, 21, 9, 17]);
  const ids = new Int32Array(B * T);
  const labels = new Int32Array(B * T).fill(IGNORE_INDEX);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < lengths[b]!; t++) {
      ids[b * T + t] = 1 + ((b * 31 + t * 7) % 63);
      if (t >= lengths[b]! / 3) labels[b * T + t] = ids[b * T + t]!;
    }
  }
  return { ids, labels, lengths, batchSize: B, seqLen: T };
}

async function oneStep(family: string, batch: Batch) {
  const { model, params, step } = await loraStep(CONFIGS[family]!, {
    weightSeed: 5,
    step: { maxGradNorm: 1e9 },
  });
  const result = await step.run([batch]);
  const values = params.read();
  step.dispose();
  model.dispose();
  return { loss: result.loss, gradNorm: result.gradNorm, values };
}

describe('padToLongest', () => {
  for (const backend of ['cpu', 'wasm'] as const) {
    for (const family of Object.keys(CONFIGS)) {
      it(`${family} on ${backend}: the step of the cut batch is the whole padded batch's`, async () => {
        await useBackend(backend);
        const whole = paddedBatch();
        const cut = padToLongest(whole);
        expect(cut.seqLen).toBe(24); // 21, rounded up to a multiple of 8
        const [a, b] = [await oneStep(family, whole), await oneStep(family, cut)];
        expect(Math.abs(b.loss - a.loss)).toBeLessThan(1e-6 * Math.abs(a.loss));
        expect(Math.abs(b.gradNorm - a.gradNorm)).toBeLessThan(1e-5 * a.gradNorm);
        let largest = 0;
        let diff = 0;
        for (let i = 0; i < a.values.length; i++) {
          largest = Math.max(largest, Math.abs(a.values[i]!));
          diff = Math.max(diff, Math.abs(a.values[i]! - b.values[i]!));
        }
        expect(diff).toBeLessThan(1e-6 * largest);
      });
    }
  }
});
