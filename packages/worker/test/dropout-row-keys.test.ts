// Dropout masks keyed by a micro-batch's rows (RunOptions.rowKeys: rowsKey of
// its sample ids), not by its place in the accumulation: the same rows draw the
// same masks wherever they land, which is what makes N workers train the
// adapter of one with dropout on (apps/coordinator/test/distributed.test.ts).
// Here: GPT-2 with every dropout site on (LoRA's, embd, attn and resid), two
// micro-batches in either order give the same step; keyed by their place
// instead, they do not (so the masks are really on and really differ).
import { useBackend } from '@lorafleet/core';
import { type Batch, IGNORE_INDEX } from '@lorafleet/data';
import { describe, expect, it } from 'vitest';
import { type RunOptions, rowsKey } from '../src/index.js';
import { loraStep } from './helpers.js';

const CONFIG = {
  ...{ model_type: 'gpt2', vocab_size: 64, n_positions: 64, n_embd: 32, n_layer: 2, n_head: 2 },
  ...{ embd_pdrop: 0.1, attn_pdrop: 0.1, resid_pdrop: 0.1 },
};

const [B, T] = [2, 16];

function batch(offset: number): Batch {
  const ids = Int32Array.from({ length: B * T }, (_, i) => 1 + ((i * 7 + offset * 13) % 63));
  const labels = Int32Array.from(ids, (id, i) => (i % T < 3 ? IGNORE_INDEX : id));
  return { ids, labels, lengths: Int32Array.from([T, T]), batchSize: B, seqLen: T };
}

async function oneStep(microBatches: Batch[], options: RunOptions): Promise<Float32Array> {
  const { model, params, step } = await loraStep(CONFIG, {
    weightSeed: 5,
    dropout: 0.1,
    step: {
      optimizer: { kind: 'sgd', lr: 1, momentum: 0, dampening: 0, nesterov: false, weightDecay: 0 },
      maxGradNorm: null,
    },
  });
  await step.run(microBatches, options);
  const values = params.read();
  step.dispose();
  model.dispose();
  return values;
}

function largestDifference(a: Float32Array, b: Float32Array): number {
  let largest = 0;
  for (let i = 0; i < a.length; i++) largest = Math.max(largest, Math.abs(a[i]! - b[i]!));
  return largest;
}

describe('dropout masks keyed by rows', () => {
  it('rowsKey depends on the ids and their order', () => {
    expect(rowsKey([4, 5])).toBe(rowsKey([4, 5]));
    const keys = [[4, 5], [5, 4], [4], [4, 5, 6], [2 ** 32 + 4, 5], []].map(rowsKey);
    expect(new Set(keys).size).toBe(keys.length);
    for (const k of keys) expect(k >>> 0).toBe(k);
  });

  it('two micro-batches in either order take the same step when keyed by their rows, not by their place', async () => {
    await useBackend('cpu');
    const [a, b] = [batch(0), batch(1)];
    const [ka, kb] = [rowsKey([0, 1]), rowsKey([2, 3])];
    const forward = await oneStep([a, b], { rowKeys: [ka, kb] });
    const reversed = await oneStep([b, a], { rowKeys: [kb, ka] });
    const byPlace = await oneStep([b, a], {});
    const byPlaceForward = await oneStep([a, b], {});
    expect(largestDifference(forward, reversed)).toBeLessThan(1e-6);
    // By place, the rows' masks swap with the order.
    expect(largestDifference(byPlaceForward, byPlace)).toBeGreaterThan(1e-3);
  });
});
