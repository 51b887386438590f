// The causal-LM loss on wasm, where the fused softmax cross-entropy and
// gelu_new run as SIMD128 code (packages/core/assembly), equals the cpu
// backend's (TypeScript kernels, the reference): tokenNllSum and its
// gradient through the whole model, on the tests' tiny GPT-2 (vocabulary
// 257, not a multiple of 4) with ignored labels.
import { describe, expect, it } from 'vitest';
import { Rng, tf, useBackend } from '@lorafleet/core';
import { Gpt2Model, IGNORE_INDEX, randomGpt2Weights, tokenNllSum } from '../src/index.js';
import type { TokenBatch } from '../src/index.js';
import { tinyGpt2Config } from './fixtures/tiny-gpt2.js';

const CONFIG = tinyGpt2Config({ embdPdrop: 0, attnPdrop: 0, residPdrop: 0 });

function batch(seed: number, B: number, T: number): TokenBatch {
  const rng = new Rng(seed);
  const ids = Int32Array.from({ length: B * T }, () =>
    Math.floor(rng.uniform() * CONFIG.vocabSize),
  );
  const labels = Int32Array.from(ids, (id, i) => (i % 5 === 2 ? IGNORE_INDEX : id));
  return { ids, labels, batchSize: B, seqLen: T };
}

/** The loss and its gradient for wte (tied head: the loss's gradient reaches it first) and wpe. */
async function lossAndGrads(backend: 'cpu' | 'wasm', b: TokenBatch) {
  await useBackend(backend);
  // std 0.2: logits spread well beyond the init's, so the softmax is not flat.
  const model = new Gpt2Model(CONFIG, randomGpt2Weights(CONFIG, 3, 0.2));
  // The base weights are frozen (LoRA trains adapters): unfreeze two for the test.
  model.wte.trainable = true;
  model.wpe.trainable = true;
  try {
    return tf.tidy(() => {
      const { value, grads } = tf.variableGrads(
        () => tokenNllSum(model, b),
        [model.wte, model.wpe],
      );
      return {
        loss: value.dataSync()[0]!,
        wte: grads[model.wte.name]!.dataSync().slice(),
        wpe: grads[model.wpe.name]!.dataSync().slice(),
      };
    });
  } finally {
    model.dispose();
  }
}

function maxAbs(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs(got[i]! - want[i]!));
  return m;
}

describe('tokenNllSum on wasm (SIMD step kernels) against cpu', () => {
  it.each([
    [1, 16],
    [3, 11],
  ])('batch %i x %i tokens: the loss and its gradients agree', async (B, T) => {
    const b = batch(B * 100 + T, B, T);
    const cpu = await lossAndGrads('cpu', b);
    const wasm = await lossAndGrads('wasm', b);
    expect(cpu.loss).toBeGreaterThan(0);
    // float32 model math, matmuls summed in another order on each backend (measured:
    // equal losses, gradients 1.3e-6 of the largest apart).
    expect(Math.abs(wasm.loss - cpu.loss) / cpu.loss).toBeLessThan(1e-6);
    const scale = Math.max(...cpu.wte.map(Math.abs));
    expect(maxAbs(wasm.wte, cpu.wte) / scale).toBeLessThan(2e-5);
    expect(maxAbs(wasm.wpe, cpu.wpe) / scale).toBeLessThan(2e-5);
  });
});
