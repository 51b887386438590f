// The micro-batch memory estimate against the figures it was fitted to: peak
// RSS of `train --steps 1 --workers 1 --batch-size B --micro-batch-size B
// --seq-len T` on the default model (measured on this project's CPU machines,
// 2026-12-06; with and without --gradient-checkpointing; with
// --packing-strategy bfd 2026-12-07) minus ~200 MB of process, model and
// runtime.
import { describe, expect, it } from 'vitest';
import type { BaseDtype } from '@lorafleet/core';
import {
  type EstimateConfig,
  WASM_HEAP_BYTES,
  activationBytes,
  largestMicroBatch,
  wasmActivationBudget,
} from '../src/index.js';

/** The default model (packages/models/pretrained/default). */
const DEFAULT: EstimateConfig = { vocabSize: 257, hiddenSize: 256, numLayers: 4, numHeads: 8 };

/** [rows, seqLen, peak RSS in kB] */
const MEASURED: [number, number, number][] = [
  [25, 32, 377_732],
  [50, 32, 558_368],
  [100, 32, 916_520],
  [50, 16, 386_140],
  [25, 128, 1_103_028],
  [8, 256, 941_116],
  [50, 64, 1_007_840],
  [12, 128, 630_088],
];
/** The same with --gradient-checkpointing (those whose activations reach ~180 MB, above the noise). */
const CHECKPOINTED: [number, number, number][] = [
  [100, 32, 418_896],
  [200, 32, 626_780],
  [25, 128, 459_136],
  [12, 128, 322_468],
  [8, 256, 400_256],
  [16, 256, 605_400],
  [50, 64, 428_692],
];
/**
 * With --packing-strategy bfd (rows packing documents apart, attention per
 * document): [rows, seqLen, the documents' length, peak RSS in kB], measured
 * 2026-12-07 on documents of one length each.
 */
const PACKED: [number, number, number, number][] = [
  [25, 256, 32, 2_241_328],
  [25, 256, 64, 2_361_680],
  [25, 256, 128, 2_605_712],
  [25, 256, 256, 3_124_120],
  [12, 256, 64, 1_226_104],
  [8, 256, 128, 958_764],
];
/** A one-layer GPT-2 of C 64 and vocabulary 32768, whose logits are most of its activations. */
const BIG_VOCAB: EstimateConfig = { vocabSize: 32768, hiddenSize: 64, numLayers: 1, numHeads: 2 };
const BIG_VOCAB_MEASURED: [number, number, number][] = [
  [32, 64, 738_236],
  [64, 64, 1_295_160],
  [96, 64, 1_820_256],
  [128, 64, 2_370_688],
];
/** The same checkpointed: the loss over chunks of 128 positions' logits (loss.ts). */
const BIG_VOCAB_CHECKPOINTED: [number, number, number][] = [
  [512, 64, 727_156],
  [1024, 64, 1_297_324],
  [3023, 64, 3_445_140],
];
const BASE_BYTES = 200e6;

describe('activationBytes', () => {
  it.each(MEASURED)('fits %i x %i within 10%% of the measured peak', (rows, seqLen, kb) => {
    const measured = kb * 1024 - BASE_BYTES;
    const estimate = activationBytes(DEFAULT, rows, seqLen);
    expect(Math.abs(estimate - measured) / measured).toBeLessThan(0.1);
  });

  it.each(CHECKPOINTED)(
    'fits %i x %i checkpointed within 10%% of the measured peak',
    (rows, seqLen, kb) => {
      const measured = kb * 1024 - BASE_BYTES;
      const estimate = activationBytes(DEFAULT, rows, seqLen, true);
      expect(Math.abs(estimate - measured) / measured).toBeLessThan(0.1);
    },
  );

  it.each(PACKED)(
    'packed documents: %i x %i, documents of %i, within 10%% of the measured peak',
    (rows, seqLen, span, kb) => {
      const measured = kb * 1024 - BASE_BYTES;
      const estimate = activationBytes(DEFAULT, rows, seqLen, false, span);
      expect(Math.abs(estimate - measured) / measured).toBeLessThan(0.1);
    },
  );

  it.each(BIG_VOCAB_MEASURED)(
    'a big vocabulary: %i x %i over the measured peak by at most 30%%, never under',
    (rows, seqLen, kb) => {
      const measured = kb * 1024 - BASE_BYTES;
      const over = activationBytes(BIG_VOCAB, rows, seqLen) / measured - 1;
      expect(over).toBeGreaterThan(0);
      expect(over).toBeLessThan(0.3);
    },
  );

  it.each(BIG_VOCAB_CHECKPOINTED)(
    'a big vocabulary checkpointed: %i x %i within 10%% of the measured peak',
    (rows, seqLen, kb) => {
      const measured = kb * 1024 - BASE_BYTES;
      const estimate = activationBytes(BIG_VOCAB, rows, seqLen, true);
      expect(Math.abs(estimate - measured) / measured).toBeLessThan(0.1);
    },
  );

  it('a big vocabulary: the largest micro-batch that fits ran, 146 x 64, checkpointed 3023 x 64', () => {
    // Their peak RSS: 2.68 and 3.45 GB; the checkpointed loss never holds more than one chunk's logits.
    const budget = wasmActivationBudget({ parameters: 2.2e6, fullFinetune: false });
    expect(largestMicroBatch(BIG_VOCAB, 64, budget)).toBe(146);
    expect(largestMicroBatch(BIG_VOCAB, 64, budget, true)).toBe(3023);
  });

  it('the largest micro-batch that fits ran: 432 x 32 and 33 x 256, checkpointed 1420 x 32 and 117 x 256', () => {
    // Their peak RSS: 3.24, 3.23, 3.39 and 3.49 GB, under wasm's 4 GiB.
    const budget = wasmActivationBudget({ parameters: 3.29e6, fullFinetune: false });
    expect(budget).toBeLessThan(WASM_HEAP_BYTES);
    expect(largestMicroBatch(DEFAULT, 32, budget)).toBe(432);
    expect(largestMicroBatch(DEFAULT, 256, budget)).toBe(33);
    expect(largestMicroBatch(DEFAULT, 32, budget, true)).toBe(1420);
    expect(largestMicroBatch(DEFAULT, 256, budget, true)).toBe(117);
    const fit = largestMicroBatch(DEFAULT, 32, budget);
    expect(activationBytes(DEFAULT, fit, 32)).toBeLessThanOrEqual(budget);
    expect(activationBytes(DEFAULT, fit + 1, 32)).toBeGreaterThan(budget);
    // Full fine-tuning keeps optimizer state for every weight: less room.
    const full = (optimizerFloats?: number) =>
      wasmActivationBudget({ parameters: 3.29e6, fullFinetune: true, optimizerFloats });
    expect(full()).toBeLessThan(budget);
    // Weight and gradient, then the optimizer's state: AdamW's 2 floats unless told.
    expect(budget - full(0)).toBeCloseTo(4 * 3.29e6, 3);
    expect(full(0) - full()).toBeCloseTo(4 * 3.29e6 * 2, 3);
    // Linear W packed by --base-dtype: more room, by the bytes each value saves.
    const packed = (baseDtype: BaseDtype) =>
      wasmActivationBudget({
        parameters: 3.29e6,
        fullFinetune: false,
        linearParameters: 4e6,
        baseDtype,
      });
    expect(packed('f32')).toBe(budget);
    expect(packed('bf16') - budget).toBe(4e6 * 2);
    expect(packed('nf4') - budget).toBeCloseTo(4e6 * (4 - 0.5625), 3);
    expect(largestMicroBatch(DEFAULT, 256, 1)).toBe(1);
  });
});
