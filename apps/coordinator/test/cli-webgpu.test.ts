// Every command that computes on tensors, run as a real `lorafleet` process
// with --backend webgpu: WGSL executes for real on SwiftShader (Vulkan on the
// CPU) where there is no GPU, and every read of GPU memory must be
// asynchronous. Each result is compared with the same command on wasm.
// (extract and inspect compute on plain arrays in float64 and take no
// --backend: there is nothing of theirs on a GPU.)
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendDescriptor, loadPeftAdapter } from '@lorafleet/core';
import { testBackends } from '@lorafleet/core/testing';
import {
  SEQ_LEN,
  TINY_CONFIG,
  evalJson,
  initTinyModel,
  lorafleetOk,
  numberedPatternRecords,
  preferenceRecords,
  removeDir,
  writeJsonl,
  trainFixture,
  heldOutLoss,
} from './helpers.js';

/**
 * Adapters of a short run on webgpu against wasm: fp32 in another summation
 * order, amplified a little by AdamW's normalised steps at lr 1e-2.
 */
const ADAPTER_TOLERANCE = 1e-4;
const { loss: LOSS_TOLERANCE } = backendDescriptor('webgpu').tolerance;
const TRAIN = ['--steps', '4', '--batch-size', '4', '--lora-dropout', '0', '--lr', '1e-2'];

// Without a Vulkan driver testBackends() fails and says what to install; only a
// machine marked LORAFLEET_NO_VULKAN=1 leaves webgpu out.
const withWebGpu = testBackends().includes('webgpu');

let dir: string | undefined;
let model: string;
let data: string;

beforeAll(async () => {
  ({ dir, model, data } = await trainFixture('webgpu', numberedPatternRecords(24)));
}, 300_000);

afterAll(() => removeDir(dir));

const onData = ['--data', '', '--seq-len', SEQ_LEN];
const dataArgs = () => onData.map((a, i) => (i === 1 ? data : a));

function train(out: string, backend: string, more: string[] = []) {
  return lorafleetOk([
    'train',
    ...['--model', model, ...dataArgs(), '--out', join(dir!, out)],
    ...TRAIN,
    ...['--backend', backend, ...more],
  ]);
}

/** The largest difference between two adapters' A and B values. */
async function adapterGap(a: string, b: string): Promise<{ gap: number; size: number }> {
  const [x, y] = await Promise.all([
    loadPeftAdapter(join(dir!, a, 'adapter')),
    loadPeftAdapter(join(dir!, b, 'adapter')),
  ]);
  expect([...x.modules.keys()]).toEqual([...y.modules.keys()]);
  let gap = 0;
  let size = 0;
  let largest = 0;
  for (const [path, m] of x.modules) {
    const n = y.modules.get(path)!;
    expect(Boolean(m.magnitude)).toBe(Boolean(n.magnitude));
    const pairs = [[m.a, n.a], [m.b, n.b], ...(m.magnitude ? [[m.magnitude, n.magnitude!]] : [])];
    for (const [p, q] of pairs as [Float32Array, Float32Array][]) {
      expect(p.length).toBe(q.length);
      size += p.length;
      for (let i = 0; i < p.length; i++) {
        gap = Math.max(gap, Math.abs(p[i]! - q[i]!));
        largest = Math.max(largest, Math.abs(q[i]!));
      }
    }
  }
  expect(largest).toBeGreaterThan(1e-2); // trained: B is no longer zero
  return { gap, size };
}

describe.skipIf(!withWebGpu)('lorafleet --backend webgpu (SwiftShader without a GPU)', () => {
  it('train --workers 2 ends with the adapter of --backend wasm', async () => {
    const [, onGpu] = await Promise.all([
      train('w2-wasm', 'wasm', ['--workers', '2']),
      train('w2-webgpu', 'webgpu', ['--workers', '2']),
    ]);
    // No dropout anywhere: both workers take the hand-scheduled step, and say so.
    const said = `${onGpu.stdout}${onGpu.stderr}`.match(/gradients: the hand-scheduled step/g);
    expect(said).toHaveLength(2);
    // Without --gpus both are on Dawn's default GPU, and the coordinator says they share it.
    expect(onGpu.stderr).toMatch(
      /warning: worker 0 [^\n]*, worker 1 [^\n]* all compute on "gpu: [^"]+": they share that GPU/,
    );
    const { gap, size } = await adapterGap('w2-webgpu', 'w2-wasm');
    expect(size).toBeGreaterThan(0);
    expect(gap).toBeLessThan(ADAPTER_TOLERANCE);
  }, 300_000);

  it("train with dropout (GPT-2's default 0.1 and --lora-dropout 0.1) ends with the adapter of wasm", async () => {
    // The masks are a hash of (seed, element) on every backend: webgpu draws wasm's, in its kernels.
    const dropping = await initTinyModel(dir!, 'dropout-model', 0, TINY_CONFIG);
    const run = (out: string, backend: string) =>
      lorafleetOk([
        'train',
        ...['--model', dropping, ...dataArgs(), '--out', join(dir!, out)],
        ...TRAIN.filter((_, i) => i < 4 || i > 5), // without --lora-dropout 0
        ...['--lora-dropout', '0.1', '--backend', backend],
      ]);
    const [, onGpu] = await Promise.all([run('drop-wasm', 'wasm'), run('drop-webgpu', 'webgpu')]);
    expect(`${onGpu.stdout}${onGpu.stderr}`).toMatch(/gradients: the hand-scheduled step/);
    const { gap } = await adapterGap('drop-webgpu', 'drop-wasm');
    expect(gap).toBeLessThan(ADAPTER_TOLERANCE);
  }, 300_000);

  it('train --use-dora with LoRA dropout takes the hand-scheduled step and ends with the adapter of wasm', async () => {
    const dora = ['--use-dora', '--lora-dropout', '0.1', '--target', 'c_attn,mlp.c_proj'];
    const [, onGpu] = await Promise.all([
      train('dora-wasm', 'wasm', dora),
      train('dora-webgpu', 'webgpu', dora),
    ]);
    expect(`${onGpu.stdout}${onGpu.stderr}`).toMatch(/gradients: the hand-scheduled step/);
    // The in-process worker's first step (compiling kernels) holds the coordinator's thread for
    // seconds here: expected, so not reported as the coordinator being stopped.
    expect(onGpu.stderr).not.toMatch(/the coordinator did not run/);
    const { gap } = await adapterGap('dora-webgpu', 'dora-wasm');
    expect(gap).toBeLessThan(ADAPTER_TOLERANCE);
  }, 300_000);

  it('train and eval --packing-strategy bfd (documents attending within each) take the hand-scheduled step and give the adapter and loss of wasm', async () => {
    // Examples of 6 to 10 tokens: three to five share a row of 32 (cli-packing.test.ts's).
    const lines = Array.from({ length: 24 }, (_, i) => ({
      prompt: `${i}:`,
      completion: ` ${'x'.repeat(1 + (i % 4))}.`,
    }));
    const examples = await writeJsonl(join(dir!, 'short-examples.jsonl'), lines);
    const packed = ['--data', examples, '--seq-len', SEQ_LEN, '--packing-strategy', 'bfd'];
    const run = (out: string, backend: string) =>
      lorafleetOk([
        ...['train', '--model', model, ...packed, '--out', join(dir!, out)],
        ...[...TRAIN, '--backend', backend],
      ]);
    const [, onGpu] = await Promise.all([run('bfd-wasm', 'wasm'), run('bfd-webgpu', 'webgpu')]);
    expect(`${onGpu.stdout}${onGpu.stderr}`).toMatch(/gradients: the hand-scheduled step/);
    const { gap } = await adapterGap('bfd-webgpu', 'bfd-wasm');
    expect(gap).toBeLessThan(ADAPTER_TOLERANCE);
    const args = ['--model', model, '--adapter', join(dir!, 'bfd-wasm', 'adapter'), ...packed];
    const [gpu, cpu] = await Promise.all([
      evalJson([...args, '--backend', 'webgpu']),
      evalJson([...args, '--backend', 'wasm']),
    ]);
    expect(gpu.tokens).toBe(cpu.tokens);
    expect(Math.abs(gpu.loss - cpu.loss)).toBeLessThan(LOSS_TOLERANCE);
  }, 300_000);

  it('train --init pissa (W read from the GPU for the SVD) ends with the adapter of wasm', async () => {
    await Promise.all([
      train('pissa-wasm', 'wasm', ['--init', 'pissa']),
      train('pissa-webgpu', 'webgpu', ['--init', 'pissa']),
    ]);
    const { gap } = await adapterGap('pissa-webgpu', 'pissa-wasm');
    expect(gap).toBeLessThan(ADAPTER_TOLERANCE);
  }, 300_000);

  it('train --objective dpo with --eval-fraction (the tape; the adapter read back from the GPU after the last eval) ends with the adapter of wasm', async () => {
    const pairs = await writeJsonl(join(dir!, 'pairs.jsonl'), preferenceRecords(16));
    const run = (out: string, backend: string) =>
      lorafleetOk([
        'train',
        ...['--model', model, '--data', pairs, '--seq-len', '24', '--out', join(dir!, out)],
        ...TRAIN,
        ...['--objective', 'dpo', '--eval-fraction', '0.25', '--backend', backend],
      ]);
    const [onWasm, onGpu] = await Promise.all([
      run('dpo-wasm', 'wasm'),
      run('dpo-webgpu', 'webgpu'),
    ]);
    expect(`${onGpu.stdout}${onGpu.stderr}`).toMatch(/gradients: the tape \([^)]*--objective dpo/);
    const after = (out: string) => heldOutLoss(out, 'after');
    expect(after(onGpu.stdout)).toBeCloseTo(after(onWasm.stdout), 3);
    const { gap } = await adapterGap('dpo-webgpu', 'dpo-wasm');
    expect(gap).toBeLessThan(ADAPTER_TOLERANCE);
    // The training rewards, summed beside the gradient on the GPU, are wasm's.
    const margins = async (out: string) =>
      (await readFile(join(dir!, out, 'metrics.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { rewardMargin: number }).rewardMargin);
    const [gpuMargins, wasmMargins] = await Promise.all([
      margins('dpo-webgpu'),
      margins('dpo-wasm'),
    ]);
    expect(gpuMargins.length).toBe(wasmMargins.length);
    expect(Math.max(...wasmMargins.map(Math.abs))).toBeGreaterThan(1e-3);
    gpuMargins.forEach((m, i) =>
      expect(Math.abs(m - wasmMargins[i]!), `step ${i + 1}`).toBeLessThan(1e-3),
    );
  }, 300_000);

  it('train --objective kto (the tape; its KL read asynchronously, as webgpu allows) ends with the adapter and the KL of wasm', async () => {
    const lines = preferenceRecords(16).flatMap(({ prompt, chosen, rejected }) => [
      { prompt, completion: chosen, label: true },
      { prompt, completion: rejected, label: false },
    ]);
    const examples = await writeJsonl(join(dir!, 'kto.jsonl'), lines);
    const run = (out: string, backend: string) =>
      lorafleetOk([
        'train',
        ...['--model', model, '--data', examples, '--seq-len', '24', '--out', join(dir!, out)],
        ...TRAIN,
        ...['--objective', 'kto', '--beta', '0.5', '--eval-fraction', '0.25', '--backend', backend],
      ]);
    const [onWasm, onGpu] = await Promise.all([
      run('kto-wasm', 'wasm'),
      run('kto-webgpu', 'webgpu'),
    ]);
    expect(`${onGpu.stdout}${onGpu.stderr}`).toMatch(/gradients: the tape \([^)]*--objective kto/);
    const after = (out: string) => heldOutLoss(out, 'after');
    expect(after(onGpu.stdout)).toBeCloseTo(after(onWasm.stdout), 3);
    const { gap } = await adapterGap('kto-webgpu', 'kto-wasm');
    expect(gap).toBeLessThan(ADAPTER_TOLERANCE);
    const kls = async (out: string) =>
      (await readFile(join(dir!, out, 'metrics.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { kl: number; rewardMargin: number });
    const [gpu, wasm] = await Promise.all([kls('kto-webgpu'), kls('kto-wasm')]);
    expect(gpu.length).toBe(wasm.length);
    gpu.forEach((m, i) => {
      expect(Math.abs(m.kl - wasm[i]!.kl), `step ${i + 1}`).toBeLessThan(1e-3);
      expect(Math.abs(m.rewardMargin - wasm[i]!.rewardMargin), `step ${i + 1}`).toBeLessThan(1e-3);
    });
  }, 300_000);

  it('eval gives the loss of wasm, with an adapter', async () => {
    const args = ['--model', model, '--adapter', join(dir!, 'w2-wasm', 'adapter'), ...dataArgs()];
    const [gpu, cpu] = await Promise.all([
      evalJson([...args, '--backend', 'webgpu']),
      evalJson([...args, '--backend', 'wasm']),
    ]);
    expect(gpu.adaptedModules).toBe(2);
    expect(gpu.tokens).toBe(cpu.tokens);
    expect(Math.abs(gpu.loss - cpu.loss)).toBeLessThan(LOSS_TOLERANCE);
  }, 120_000);

  it('generate --temperature 0 (KV cache) writes the text of wasm', async () => {
    const args = [
      ...['generate', '--model', model, '--adapter', join(dir!, 'w2-wasm', 'adapter')],
      ...['--prompt', 'abcabc abc', '--max-new-tokens', '12', '--temperature', '0'],
    ];
    const [gpu, cpu] = await Promise.all([
      lorafleetOk([...args, '--backend', 'webgpu']),
      lorafleetOk([...args, '--backend', 'wasm']),
    ]);
    expect(gpu.stdout.length).toBeGreaterThan('abcabc abc\n'.length);
    expect(gpu.stdout).toBe(cpu.stdout);
  }, 120_000);

  // Rounding W moves the loss a little, not much: bf16 keeps 8 bits of each value, nf4 16 levels per block.
  it.each([
    ['bf16', 'W as packed halves', 1e-2],
    ['nf4', "QLoRA's 4-bit NormalFloat", 5e-2],
  ] as const)(
    '--base-dtype %s (%s, unpacked in WGSL): train and eval agree with wasm',
    async (dtype, _what, roundingBound) => {
      const base = ['--base-dtype', dtype];
      await Promise.all([
        train(`${dtype}-wasm`, 'wasm', base),
        train(`${dtype}-webgpu`, 'webgpu', base),
      ]);
      const { gap } = await adapterGap(`${dtype}-webgpu`, `${dtype}-wasm`);
      expect(gap).toBeLessThan(ADAPTER_TOLERANCE);
      const adapter = join(dir!, `${dtype}-wasm`, 'adapter');
      const args = ['--model', model, '--adapter', adapter, ...dataArgs()];
      const [gpu, cpu, f32] = await Promise.all([
        evalJson([...args, ...base, '--backend', 'webgpu']),
        evalJson([...args, ...base, '--backend', 'wasm']),
        evalJson([...args, '--backend', 'wasm']),
      ]);
      expect(Math.abs(gpu.loss - cpu.loss)).toBeLessThan(LOSS_TOLERANCE);
      expect(Math.abs(cpu.loss - f32.loss)).toBeGreaterThan(0);
      expect(Math.abs(cpu.loss - f32.loss)).toBeLessThan(roundingBound);
    },
    300_000,
  );

  it('merge checks merged against unmerged logits on the GPU and saves a model that evaluates like base + adapter', async () => {
    const adapter = join(dir!, 'w2-wasm', 'adapter');
    const merged = join(dir!, 'merged-webgpu');
    const { stdout } = await lorafleetOk([
      ...['merge', '--model', model, '--adapter', adapter, '--out', merged],
      ...['--backend', 'webgpu'],
    ]);
    const gap = Number(/differ by at most (\S+) from the unmerged model/.exec(stdout)?.[1]);
    expect(gap).toBeLessThan(1e-4);
    const [alone, adapted] = await Promise.all([
      evalJson(['--model', merged, ...dataArgs()]),
      evalJson(['--model', model, '--adapter', adapter, ...dataArgs()]),
    ]);
    expect(alone.adaptedModules).toBe(0);
    expect(Math.abs(alone.loss - adapted.loss)).toBeLessThan(LOSS_TOLERANCE);
  }, 120_000);
});
