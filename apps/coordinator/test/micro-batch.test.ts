import { describe, expect, it } from 'vitest';
import { activationBytes, wasmActivationBudget } from '@lorafleet/models';
import { parseCommand } from '../src/args.js';
import { chooseMicroBatch } from '../src/training/micro-batch.js';
import { stepOptionsFrom } from '../src/training/step-options.js';
import { trainSpec } from '../src/training/train-spec.js';

/** Gemma 3 270M's shape: 18 layers of 640, 4 heads, a 262k vocabulary, 268M weights. */
const GEMMA3_270M = { numLayers: 18, hiddenSize: 640, numHeads: 4, vocabSize: 262144 };
const PARAMETERS = 268e6; // of which ~100M in linear layers, the rest the embedding

function notes(
  seqLen: number,
  parameters = PARAMETERS,
  linearParameters?: number,
  gradientCheckpointing = false,
): string[] {
  const lines: string[] = [];
  const memory = {
    config: GEMMA3_270M,
    seqLen,
    parameters,
    linearParameters,
    fullFinetune: false,
    backend: 'wasm' as const,
    gradientCheckpointing,
  };
  chooseMicroBatch(undefined, 8, memory, (line) => lines.push(line));
  return lines;
}

const warning = (lines: string[]) => lines.find((l) => l.startsWith('warning'));
/** The N of the first "WAY--seq-len N fits" in a warning. */
const seqLenFitting = (line: string, way = '') =>
  Number(new RegExp(`${way}--seq-len (\\d+) fits`).exec(line)![1]);

describe('chooseMicroBatch on wasm', () => {
  it('warns when one row alone needs more than the heap leaves, naming the --seq-len that fits', () => {
    const budget = wasmActivationBudget({ parameters: PARAMETERS, fullFinetune: false });
    expect(activationBytes(GEMMA3_270M, 1, 512)).toBeGreaterThan(budget);
    const line = warning(notes(512))!;
    expect(line).toMatch(/^warning: one row of 512 tokens/);
    expect(line).toMatch(/more than the \d+\.\d GiB the wasm backend's 4 GiB heap leaves/);
    const fits = seqLenFitting(line);
    expect(activationBytes(GEMMA3_270M, 1, fits)).toBeLessThanOrEqual(budget);
    expect(activationBytes(GEMMA3_270M, 1, fits + 1)).toBeGreaterThan(budget);
  });

  it('names what --gradient-checkpointing would leave room for, and counts it when given', () => {
    const budget = wasmActivationBudget({ parameters: PARAMETERS, fullFinetune: false });
    expect(warning(notes(512))).toMatch(/; with --gradient-checkpointing it fits;/);
    const fits = seqLenFitting(warning(notes(4096))!, 'with --gradient-checkpointing ');
    expect(activationBytes(GEMMA3_270M, 1, fits, true)).toBeLessThanOrEqual(budget);
    expect(activationBytes(GEMMA3_270M, 1, fits + 1, true)).toBeGreaterThan(budget);
    expect(fits).toBeGreaterThan(5 * seqLenFitting(warning(notes(4096))!));
    // Given: no warning where it fits; where it does not, the --seq-len that fits checkpointed.
    expect(warning(notes(2048, PARAMETERS, undefined, true))).toBeUndefined();
    const given = warning(notes(4096, PARAMETERS, undefined, true))!;
    expect(given).not.toMatch(/with --gradient-checkpointing/);
    expect(seqLenFitting(given)).toBe(fits);
  });

  it('names what --base-dtype nf4 would leave room for, where the linear weights are known', () => {
    const line = (seqLen: number, linearParameters?: number) =>
      warning(notes(seqLen, PARAMETERS, linearParameters))!;
    expect(line(512)).not.toMatch(/nf4/); // no linear weights known: nothing to pack
    const nf4 = seqLenFitting(line(512, 100e6), 'with --base-dtype nf4 \\(QLoRA\\) ');
    const budget = wasmActivationBudget({
      parameters: PARAMETERS,
      fullFinetune: false,
      linearParameters: 100e6,
      baseDtype: 'nf4',
    });
    expect(activationBytes(GEMMA3_270M, 1, nf4)).toBeLessThanOrEqual(budget);
    expect(activationBytes(GEMMA3_270M, 1, nf4 + 1)).toBeGreaterThan(budget);
    expect(nf4).toBeGreaterThan(seqLenFitting(line(512)));
  });

  it('counts a DPO row as two sequences of --seq-len: half the rows fit, and the warning names a pair', () => {
    const memory = {
      config: GEMMA3_270M,
      seqLen: 128,
      parameters: PARAMETERS,
      fullFinetune: false,
      backend: 'wasm' as const,
    };
    const budget = wasmActivationBudget(memory);
    const lines: string[] = [];
    const single = chooseMicroBatch(undefined, 4096, memory, (l) => lines.push(l));
    const pairs = chooseMicroBatch(undefined, 4096, { ...memory, sequencesPerRow: 2 }, (l) =>
      lines.push(l),
    );
    expect(pairs).toBe(Math.floor(single / 2));
    expect(activationBytes(GEMMA3_270M, 2 * pairs, 128)).toBeLessThanOrEqual(budget);
    expect(activationBytes(GEMMA3_270M, 2 * pairs + 2, 128)).toBeGreaterThan(budget);
    expect(lines[1]).toContain('one of 4096 rows of 2 x 128 tokens would need');
    expect(() =>
      chooseMicroBatch(single, 4096, { ...memory, sequencesPerRow: 2 }, () => {}),
    ).toThrow(`--micro-batch-size ${single}: one micro-batch of ${single} rows of 2 x 128 tokens`);
    const pair = (seqLen: number) => {
      const out: string[] = [];
      chooseMicroBatch(undefined, 8, { ...memory, seqLen, sequencesPerRow: 2 }, (l) => out.push(l));
      return warning(out);
    };
    expect(pair(512)).toMatch(/^warning: one pair of 2 x 512 tokens/);
    // The --seq-len it names fits a pair: two rows of it.
    const fits = seqLenFitting(pair(512)!);
    expect(activationBytes(GEMMA3_270M, 2, fits)).toBeLessThanOrEqual(budget);
    expect(activationBytes(GEMMA3_270M, 2, fits + 1)).toBeGreaterThan(budget);
  });

  it('rows packing documents apart: short documents fit more rows; documents that fill the row need more', () => {
    // The default model's shape (packages/models/pretrained/default) with a context of 1024.
    const config = { numLayers: 4, hiddenSize: 256, numHeads: 8, vocabSize: 257 };
    const memory = {
      ...{ config, seqLen: 1024, parameters: 3.5e6, fullFinetune: false },
      backend: 'wasm' as const,
    };
    const budget = wasmActivationBudget(memory);
    const fit = (documentSpan?: number) =>
      chooseMicroBatch(
        undefined,
        4096,
        { ...memory, ...(documentSpan ? { documentSpan } : {}) },
        () => {},
      );
    const [rows, short, whole] = [fit(), fit(256), fit(1024)];
    expect(short).toBeGreaterThan(rows); // attention spans 256 keys, not 1024
    // Documents as long as the row: attention as wide, and the split and joined copies besides.
    expect(whole).toBeLessThanOrEqual(rows);
    expect(activationBytes(config, 1, 1024, false, 1024)).toBeGreaterThan(
      activationBytes(config, 1, 1024),
    );
    expect(activationBytes(config, short, 1024, false, 256)).toBeLessThanOrEqual(budget);
    expect(activationBytes(config, short + 1, 1024, false, 256)).toBeGreaterThan(budget);
  });

  it('says nothing of a row that fits, and names no --seq-len when no row does', () => {
    expect(notes(128).filter((l) => l.startsWith('warning'))).toEqual([]);
    const none = notes(128, 1e9).find((l) => l.startsWith('warning'));
    // 1e9 weights alone take 3.7 GiB: what the warning names instead of a row.
    expect(none).toMatch(
      /^warning: the weights need about 3\.7 GiB, more than the 3\.0 GiB of the wasm backend's 4 GiB heap that this run can use: the run will likely abort\. a GPU backend/,
    );
  });
});

describe('full fine-tuning on wasm', () => {
  it("weighs the chosen optimizer's state: SGD fits micro-batches where AdamW's m and v leave no room", () => {
    const memory = {
      config: GEMMA3_270M,
      seqLen: 64,
      parameters: PARAMETERS,
      fullFinetune: true,
      backend: 'wasm' as const,
    };
    const microBatch = (...argv: string[]) => {
      const required = ['--model', 'm', '--data', 'd', '--out', 'o', '--batch-size', '8'];
      const o = parseCommand(trainSpec, [...required, '--full-finetune', ...argv], {});
      if (o === 'help') throw new Error('unexpected --help');
      return stepOptionsFrom(o, new Uint32Array(8).fill(64), memory).microBatchSize;
    };
    // weight, gradient, and the state: AdamW 2 floats (4.3 GB in all), SGD none (2.1 GB).
    const sgdBudget = wasmActivationBudget({ ...memory, optimizerFloats: 0 });
    const sgd = microBatch('--optim', 'sgd');
    expect(sgd).toBe(3);
    expect(activationBytes(GEMMA3_270M, sgd, 64)).toBeLessThanOrEqual(sgdBudget);
    expect(activationBytes(GEMMA3_270M, sgd + 1, 64)).toBeGreaterThan(sgdBudget);
    expect(wasmActivationBudget(memory)).toBeLessThan(0); // AdamW: nothing left, and the run is told
    const lines: string[] = [];
    expect(chooseMicroBatch(undefined, 8, memory, (l) => lines.push(l))).toBe(1);
    expect(lines).toEqual([
      "warning: the weights, their gradients and the optimizer's state need about 4.0 GiB, more than the 3.0 GiB of the wasm backend's 4 GiB heap that this run can use: the run will likely abort. LoRA (without --full-finetune) keeps no gradient or state per weight, --optim sgd none beside the gradient; a GPU backend (--backend webgpu) has no such limit",
    ]);
    expect(microBatch()).toBe(1);
    // SGD's momentum buffer is one float more per weight: 1.07 GB less room.
    expect(microBatch('--optim', 'sgd', '--optim-args', 'momentum=0.9')).toBe(1);
  });
});
