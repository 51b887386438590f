// --optim beyond AdamW through the real CLI and real processes: on 2 workers,
// a run stopped at step 4 and resumed ends with the uninterrupted run's
// adapter bytes for Adafactor (factored moments, and the 1-D state of trained
// biases), SGD with momentum, RMSprop with momentum, Adagrad and Lion (and
// logs the uninterrupted run's num_tokens); the
// checkpoint keeps torch's state names and shapes; 1 worker trains 2's
// adapter; a resume with another optimizer is refused, naming both. The
// updates themselves: packages/core/test/optimizers.test.ts; against
// transformers' Trainer: test/trainer-parity.test.ts.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSafetensorsFile } from '@lorafleet/core';
import {
  WORKERS_TOLERANCE,
  adapterGap,
  checkpointDir,
  lorafleet,
  lorafleetOk,
  patternRecords,
  removeDir,
  trainFixture,
} from './helpers.js';

let dir: string | undefined;
let model: string;
let data: string;

beforeAll(async () => {
  ({ dir, model, data } = await trainFixture('optim', patternRecords(40), { seed: 3 }));
}, 300_000);

afterAll(() => removeDir(dir));

const COMMON = [
  ...['--steps', '6', '--batch-size', '6', '--seq-len', '32', '--lora-dropout', '0'],
  ...['--schedule', 'constant', '--checkpoint-every', '2', '--workers', '2'],
];
const train = (out: string, ...args: string[]) =>
  lorafleetOk(['train', '--model', model, '--data', data, '--out', out, ...COMMON, ...args]);
const adapterFile = (run: string) => readFile(join(run, 'adapter', 'adapter_model.safetensors'));
const numTokens = async (run: string) =>
  (await readFile(join(run, 'metrics.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((line) => (JSON.parse(line) as { numTokens?: number }).numTokens);

const OPTIMIZERS: Record<string, string[]> = {
  // --lora-bias all trains the biases too: Adafactor keeps their (1-D) state unfactored.
  adafactor: ['--optim', 'adafactor', '--lr', '1e-2', '--lora-bias', 'all'],
  sgd: ['--optim', 'sgd', '--optim-args', 'momentum=0.9', '--lr', '0.5'],
  rmsprop: ['--optim', 'rmsprop', '--optim-args', 'momentum=0.5,alpha=0.9', '--lr', '1e-3'],
  adagrad: ['--optim', 'adagrad', '--optim-args', 'lr_decay=0.01', '--lr', '1e-2'],
  lion: ['--optim', 'lion_32bit', '--lr', '1e-3', '--weight-decay', '0.1'],
};

describe('--optim through lorafleet train', () => {
  it.each(Object.keys(OPTIMIZERS))(
    '%s: stopped at step 4 and resumed, ends with the uninterrupted adapter bytes',
    async (name) => {
      const args = OPTIMIZERS[name]!;
      const [whole, cut] = [join(dir!, `${name}-whole`), join(dir!, `${name}-cut`)];
      const first = await train(whole, ...args);
      expect(first.stdout).toMatch(/optimizer: (Adafactor|SGD|RMSprop|Adagrad|Lion) lr /);
      await train(cut, ...args, '--steps', '4');
      await train(cut, ...args, '--resume', cut);
      expect((await adapterFile(cut)).equals(await adapterFile(whole))).toBe(true);
      // TRL's num_tokens goes on counting from the checkpoint's step.
      const counts = await Promise.all([cut, whole].map(numTokens));
      expect(counts[0]).toEqual(counts[1]);
      expect(counts[1]![5]).toBeGreaterThan(counts[1]![0]!);
    },
    300_000,
  );

  it("keeps torch's state names and shapes in the checkpoint (Adafactor: a row and a column per matrix)", async () => {
    const file = await readSafetensorsFile(
      join(checkpointDir(join(dir!, 'adafactor-whole'), 2), 'optimizer.safetensors'),
    );
    expect(file.metadata.format).toBe('lorafleet-adafactor');
    const slot = 'transformer.h.0.attn.c_attn';
    const shape = (name: string) => file.tensors.get(name)?.shape;
    // lora_A [r, in] = [8, 32] and lora_B [out, r] = [96, 8]: a row per row, a column per column.
    expect(shape(`${slot}.lora_A.exp_avg_sq_row`)).toEqual([8]);
    expect(shape(`${slot}.lora_A.exp_avg_sq_col`)).toEqual([32]);
    expect(shape(`${slot}.lora_B.exp_avg_sq_row`)).toEqual([96]);
    expect(shape(`${slot}.lora_B.exp_avg_sq_col`)).toEqual([8]);
    expect(shape(`${slot}.lora_A.exp_avg_sq`)).toBeUndefined();
    const bias = [...file.tensors.keys()].find((k) => k.endsWith('bias.exp_avg_sq'));
    expect(bias, [...file.tensors.keys()].join(', ')).toBeDefined();
    expect(shape(bias!)).toHaveLength(1);
  });

  it('1 worker trains the adapter of 2 (SGD with momentum)', async () => {
    const one = join(dir!, 'sgd-one');
    await train(one, ...OPTIMIZERS.sgd!, '--workers', '1');
    const { diff, largestB } = await adapterGap(
      join(one, 'adapter'),
      join(dir!, 'sgd-whole', 'adapter'),
    );
    expect(largestB).toBeGreaterThan(1e-3);
    expect(diff).toBeLessThan(WORKERS_TOLERANCE);
  }, 300_000);

  it('refuses to resume with another optimizer, naming both', async () => {
    const cut = join(dir!, 'adafactor-cut');
    const r = await lorafleet([
      ...['train', '--model', model, '--data', data, '--out', cut, ...COMMON],
      ...['--lr', '1e-2', '--lora-bias', 'all', '--resume', cut],
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--optim \(checkpoint "?adafactor"?, now "?adamw"?\)/);
  });
});
