// The micro-batch memory estimate against the figures it was fitted to: peak
// RSS of `train --steps 1` on the default model (measured on this project's
// CPU machines) minus ~170 MB of process, model and runtime.
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
  [25, 32, 826_160],
  [50, 32, 1_492_740],
  [100, 32, 2_806_832],
  [50, 16, 795_864],
  [25, 128, 3_129_620],
];
const BASE_BYTES = 170e6;

describe('activationBytes', () => {
  it.each(MEASURED)('fits %i x %i within 12%% of the measured peak', (rows, seqLen, kb) => {
    const measured = kb * 1024 - BASE_BYTES;
    const estimate = activationBytes(DEFAULT, rows, seqLen);
    expect(Math.abs(estimate - measured) / measured).toBeLessThan(0.12);
  });

  it('refuses what aborted: 200 x 32 on the default model is over the wasm budget; 121 fits', () => {
    const budget = wasmActivationBudget({ parameters: 5e6, fullFinetune: false });
    expect(budget).toBeLessThan(WASM_HEAP_BYTES);
    expect(activationBytes(DEFAULT, 200, 32)).toBeGreaterThan(budget);
    const fit = largestMicroBatch(DEFAULT, 32, budget);
    expect(fit).toBeGreaterThan(100); // 100 x 32 ran (2.8 GB)
    expect(fit).toBeLessThan(200);
    expect(activationBytes(DEFAULT, fit, 32)).toBeLessThanOrEqual(budget);
    expect(activationBytes(DEFAULT, fit + 1, 32)).toBeGreaterThan(budget);
    // Full fine-tuning keeps optimizer state for every weight: less room.
    expect(wasmActivationBudget({ parameters: 5e6, fullFinetune: true })).toBeLessThan(budget);
    // Linear W packed by --base-dtype: more room, by the bytes each value saves.
    const packed = (baseDtype: BaseDtype) =>
      wasmActivationBudget({
        parameters: 5e6,
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
