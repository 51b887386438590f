// Batches against the wasm heap and against small data, with real processes:
// an explicit micro-batch whose activations cannot fit the 4 GiB heap is
// refused before the model loads, with the estimate and the fix (it used to
// abort inside wasm after 20 s); --gradient-checkpointing changes memory,
// not the adapter; a batch larger than the data is reported as the real one.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  REPO_ROOT,
  SEQ_LEN,
  ensureBuilt,
  initTinyModel,
  lorafleet,
  makeTempDir,
  patternRecords,
  removeDir,
  writeJsonl,
} from './helpers.js';

const DEFAULT_MODEL = join(REPO_ROOT, 'packages', 'models', 'pretrained', 'default');

let dir: string | undefined;
let data: string;
let tiny: string;

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('batch-memory');
  tiny = await initTinyModel(dir, 'tiny');
  data = await writeJsonl(join(dir, 'train.jsonl'), patternRecords(20));
}, 300_000);

afterAll(() => removeDir(dir));

describe.concurrent('batches', () => {
  it('refuses a micro-batch over the wasm heap up front, with the estimate and the fix', async () => {
    const started = performance.now();
    const result = await lorafleet([
      'train',
      ...['--model', DEFAULT_MODEL, '--data', data, '--out', join(dir!, 'too-big')],
      ...['--batch-size', '600', '--micro-batch-size', '600', '--seq-len', '32', '--steps', '1'],
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /lorafleet train: --micro-batch-size 600: one micro-batch of 600 x 32 tokens needs about \d+\.\d GiB of activations, more than the \d+\.\d GiB the wasm backend's 4 GiB heap leaves; use --micro-batch-size \d+ or less \(or --gradient-checkpointing\), or a GPU backend/,
    );
    expect(result.stderr).not.toContain('Aborted');
    expect((performance.now() - started) / 1000).toBeLessThan(60);
  });

  it('--gradient-checkpointing trains the same adapter bit for bit on 2 workers, and says so', async () => {
    const run = (name: string, ...extra: string[]) =>
      lorafleet([
        'train',
        ...['--model', tiny, '--data', data, '--out', join(dir!, name), '--workers', '2'],
        ...['--batch-size', '8', '--micro-batch-size', '2', '--seq-len', SEQ_LEN, '--steps', '3'],
        ...['--lora-dropout', '0.1', '--target', 'c_attn,c_fc', '--lr', '1e-2', ...extra],
      ]);
    const [plain, checkpointed] = await Promise.all([
      run('ckpt-off'),
      run('ckpt-on', '--gradient-checkpointing'),
    ]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(checkpointed.code, checkpointed.stderr).toBe(0);
    expect(checkpointed.stdout).toMatch(/micro-batches of 2, gradient checkpointing/);
    // Each worker's ready line: the option reached both replicas' steps.
    const ready = (out: string) =>
      out.match(/trainable parameters on wasm, gradient checkpointing; ready/g);
    expect(ready(checkpointed.stdout + checkpointed.stderr)).toHaveLength(2);
    expect(plain.stdout).not.toContain('gradient checkpointing');
    const weights = (name: string) =>
      readFile(join(dir!, name, 'adapter', 'adapter_model.safetensors'));
    const [a, b] = await Promise.all([weights('ckpt-off'), weights('ckpt-on')]);
    expect(Buffer.compare(a, b)).toBe(0);
    const loss = (out: string) => /train loss ([\d.]+) \(first/.exec(out)?.[1];
    expect(loss(checkpointed.stdout)).toBe(loss(plain.stdout));
    expect(loss(plain.stdout)).toBeDefined();
  });

  it("--gradient-accumulation-steps: transformers' batch, micro-batch x steps x workers, and its adapter", async () => {
    const run = (name: string, ...extra: string[]) =>
      lorafleet([
        'train',
        ...['--model', tiny, '--data', data, '--out', join(dir!, name), '--workers', '2'],
        ...['--micro-batch-size', '2', '--seq-len', SEQ_LEN, '--steps', '3'],
        ...['--lora-dropout', '0.1', '--target', 'c_attn,c_fc', '--lr', '1e-2', ...extra],
      ]);
    const [batch, accumulated] = await Promise.all([
      run('batch-8', '--batch-size', '8'),
      run('accumulated', '--gradient-accumulation-steps', '2'),
    ]);
    expect(batch.code, batch.stderr).toBe(0);
    expect(accumulated.code, accumulated.stderr).toBe(0);
    expect(accumulated.stdout).toMatch(
      new RegExp(
        `3 steps of 8 rows x ${SEQ_LEN} tokens \\([\\d.]+ epochs\\), ~4 rows per worker, micro-batches of 2`,
      ),
    );
    const weights = (name: string) =>
      readFile(join(dir!, name, 'adapter', 'adapter_model.safetensors'));
    expect(Buffer.compare(await weights('batch-8'), await weights('accumulated'))).toBe(0);
  });

  it('reports the real batch when the data has fewer rows than --batch-size', async () => {
    const result = await lorafleet([
      'train',
      ...['--model', tiny, '--data', data, '--out', join(dir!, 'small')],
      ...['--batch-size', '200', '--seq-len', SEQ_LEN, '--steps', '1'],
    ]);
    expect(result.code, result.stderr).toBe(0);
    const rows = Number(
      /--batch-size 200 is more than the (\d+) training rows/.exec(result.stderr)?.[1],
    );
    expect(rows).toBeGreaterThan(0);
    expect(rows).toBeLessThan(200);
    const output = result.stdout + result.stderr;
    expect(output).toContain(`1 steps of ${rows} rows x ${SEQ_LEN} tokens`);
    expect(output).not.toContain('of 200 rows');
  });
});
