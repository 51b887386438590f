// NEFTune (--neftune-noise-alpha) on the hand-scheduled step (SwiftShader
// here): the noise the tape adds to the token embeddings, drawn on the host
// from the micro-batch's seed, is a plan input written at each replay and
// added by the embedding program before its scale and the position
// embeddings, so loss and gradients equal the tape's: GPT-2 (learned
// positions, packed rows too), Llama and Gemma (embeddings scaled by
// sqrt(C) after the noise). The noise matters: without it the sums differ.
import { describe, expect, it } from 'vitest';
import { chooseStepGradients } from '../../packages/models/src/index.js';
import { webGpuSuite } from '../../packages/core/test/webgpu-suite.js';
import {
  CONFIG,
  batch,
  expectTapeEquality,
  llamaBatch,
  loraLlama,
  loraModel,
  maxRelDiff,
  tapeSums,
} from './fixtures.js';
import { GEMMA_OVERRIDES } from '../../packages/models/test/fixtures/tiny-llama.js';

webGpuSuite();

const ALPHA = 5;

describe('NEFTune on the hand-scheduled step equals the tape', () => {
  it('GPT-2, every linear layer, 2 x 7, and packed rows', async () => {
    const { model, params } = await loraModel(CONFIG, ['c_attn', 'c_proj', 'c_fc']);
    try {
      expect(chooseStepGradients(model, params, 'auto')).toEqual({
        path: 'scheduled',
        reason: null,
      });
      const batches = [batch(2, 7), batch(2, 7, 1)];
      await expectTapeEquality(model, params, batches, undefined, ALPHA);
      const packed = {
        ...batch(2, 7, 2),
        positionIds: Int32Array.of(0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6),
      };
      await expectTapeEquality(model, params, [packed], undefined, ALPHA);
      // The noise matters.
      const [plain, noisy] = [
        await tapeSums(model, params, batches),
        await tapeSums(model, params, batches, ALPHA),
      ];
      expect(maxRelDiff(plain.grads, noisy.grads)).toBeGreaterThan(1e-3);
    } finally {
      model.dispose();
    }
  });

  it.each([
    ['Llama', {}],
    ['Gemma (embeddings times sqrt(C) after the noise)', GEMMA_OVERRIDES],
  ])('%s, every linear layer, 2 x 7', async (_name, overrides) => {
    const { model, params } = await loraLlama(overrides, 'all-linear');
    try {
      await expectTapeEquality(
        model,
        params,
        [llamaBatch(2, 7), llamaBatch(2, 7, 1)],
        undefined,
        ALPHA,
      );
    } finally {
      model.dispose();
    }
  });
});
