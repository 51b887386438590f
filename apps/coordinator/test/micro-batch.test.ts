import { describe, expect, it } from 'vitest';
import { activationBytes, wasmActivationBudget } from '@lorafleet/models';
import { chooseMicroBatch } from '../src/training/micro-batch.js';

/** Gemma 3 270M's shape: 18 layers of 640, 4 heads, a 262k vocabulary, 268M weights. */
const GEMMA3_270M = { numLayers: 18, hiddenSize: 640, numHeads: 4, vocabSize: 262144 };
const PARAMETERS = 268e6; // of which ~100M in linear layers, the rest the embedding

function notes(seqLen: number, parameters = PARAMETERS, linearParameters?: number): string[] {
  const lines: string[] = [];
  const memory = {
    config: GEMMA3_270M,
    seqLen,
    parameters,
    linearParameters,
    fullFinetune: false,
    backend: 'wasm' as const,
  };
  chooseMicroBatch(undefined, 8, memory, (line) => lines.push(line));
  return lines;
}

describe('chooseMicroBatch on wasm', () => {
  it('warns when one row alone needs more than the heap leaves, naming the --seq-len that fits', () => {
    const budget = wasmActivationBudget({ parameters: PARAMETERS, fullFinetune: false });
    expect(activationBytes(GEMMA3_270M, 1, 128)).toBeGreaterThan(budget);
    const warning = notes(128).find((l) => l.startsWith('warning: one row of 128 tokens'));
    expect(warning).toMatch(/more than the \d+\.\d GiB the wasm backend's 4 GiB heap leaves/);
    const fits = Number(/--seq-len (\d+) fits/.exec(warning!)![1]);
    expect(activationBytes(GEMMA3_270M, 1, fits)).toBeLessThanOrEqual(budget);
    expect(activationBytes(GEMMA3_270M, 1, fits + 1)).toBeGreaterThan(budget);
  });

  it('names what --base-dtype nf4 would leave room for, where the linear weights are known', () => {
    const line = (seqLen: number, linearParameters?: number) =>
      notes(seqLen, PARAMETERS, linearParameters).find((l) => l.startsWith('warning'))!;
    expect(line(128)).not.toMatch(/nf4/); // no linear weights known: nothing to pack
    expect(line(128, 100e6)).toMatch(
      /--seq-len 123 fits; with --base-dtype nf4 \(QLoRA\) it fits;/,
    );
    const nf4 = Number(
      /with --base-dtype nf4 \(QLoRA\) --seq-len (\d+) fits/.exec(line(256, 100e6))![1],
    );
    const budget = wasmActivationBudget({
      parameters: PARAMETERS,
      fullFinetune: false,
      linearParameters: 100e6,
      baseDtype: 'nf4',
    });
    expect(activationBytes(GEMMA3_270M, 1, nf4)).toBeLessThanOrEqual(budget);
    expect(activationBytes(GEMMA3_270M, 1, nf4 + 1)).toBeGreaterThan(budget);
    expect(nf4).toBeGreaterThan(128);
  });

  it('says nothing of a row that fits, and names no --seq-len when no row does', () => {
    expect(notes(32).filter((l) => l.startsWith('warning'))).toEqual([]);
    const none = notes(128, 1e9).find((l) => l.startsWith('warning'));
    expect(none).toMatch(/the run may abort\. a GPU backend/);
  });
});
