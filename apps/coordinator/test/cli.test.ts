// The main path through the CLI as a user walks it, with real processes and
// files: init a tiny model, LoRA-train it, then eval, generate and merge with
// the adapter; and a full fine-tune whose model folder eval loads.
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  SEQ_LEN,
  ensureBuilt,
  evalJson,
  initTinyModel,
  lorafleetOk,
  makeTempDir,
  patternRecords,
  readJson,
  removeDir,
  writeJsonl,
} from './helpers.js';

/** The fields of OUT/summary.json these tests read. */
interface TrainSummary {
  mode: 'lora' | 'full';
  steps: number;
  evalLossBefore: number | null;
  evalLossAfter: number | null;
  saved: string;
  trainLossFirst10: number;
  trainLossLast10: number;
}

interface MetricsLine {
  step: number;
  loss: number;
  lr: number;
  tokens: number;
  seconds: number;
}

const STEPS = 20;
const LR = 1e-2;

let dir: string | undefined;
let base: string;
let trainData: string;
let validData: string;
let run: string;
let summary: TrainSummary;

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('pipeline');
  base = await initTinyModel(dir, 'base');
  trainData = await writeJsonl(join(dir, 'train.jsonl'), patternRecords(40));
  validData = await writeJsonl(join(dir, 'valid.jsonl'), patternRecords(10));
  run = join(dir, 'run');
  await lorafleetOk([
    'train',
    ...['--model', base, '--data', trainData, '--eval-data', validData, '--out', run],
    ...['--steps', String(STEPS), '--lr', String(LR), '--seq-len', SEQ_LEN],
  ]);
  summary = await readJson<TrainSummary>(join(run, 'summary.json'));
}, 300_000);

afterAll(() => removeDir(dir));

/** The summary's train losses: the first and last 10 steps, or a shorter run's two halves. */
function expectLossWindows(s: TrainSummary, metrics: readonly MetricsLine[]): void {
  const w = Math.min(10, Math.floor(metrics.length / 2));
  const mean = (xs: readonly MetricsLine[]) => xs.reduce((a, m) => a + m.loss, 0) / xs.length;
  expect(s.trainLossFirst10).toBeCloseTo(mean(metrics.slice(0, w)), 6);
  expect(s.trainLossLast10).toBeCloseTo(mean(metrics.slice(-w)), 6);
}

/** eval's data options, the same as training used, so the rows are the same. */
const onValid = () => ['--data', validData, '--seq-len', SEQ_LEN];

// The tests below only read the shared run and write into folders of their own.
describe.concurrent('lorafleet on a tiny model', () => {
  describe('train (LoRA)', () => {
    it('writes a PEFT adapter, one metrics line per step and a summary', async () => {
      expect((await readdir(join(run, 'adapter'))).sort()).toEqual([
        'adapter_config.json',
        'adapter_model.safetensors',
      ]);
      const lines = (await readFile(join(run, 'metrics.jsonl'), 'utf8')).trimEnd().split('\n');
      expect(lines).toHaveLength(STEPS);
      const metrics = lines.map((l) => JSON.parse(l) as MetricsLine);
      metrics.forEach((m, i) => {
        expect(m.step).toBe(i + 1);
        expect(Number.isFinite(m.loss) && m.loss > 0).toBe(true);
        expect(m.lr).toBeGreaterThan(0);
        expect(m.lr).toBeLessThanOrEqual(LR);
        expect(Number.isInteger(m.tokens) && m.tokens > 0).toBe(true);
        if (i > 0) expect(m.seconds).toBeGreaterThanOrEqual(metrics[i - 1]!.seconds);
      });
      expect(summary).toMatchObject({ mode: 'lora', steps: STEPS, saved: join(run, 'adapter') });
      // First and last 10 steps, or in a shorter run its two halves (never the same steps twice).
      expectLossWindows(summary, metrics);
    });

    it('lowers the eval loss on a learnable pattern', () => {
      expect(summary.evalLossBefore).toBeTypeOf('number');
      expect(summary.evalLossAfter).toBeTypeOf('number');
      expect(summary.evalLossAfter!).toBeLessThan(summary.evalLossBefore! - 0.05);
    });
  });

  describe('eval', () => {
    it('reproduces the eval losses of summary.json, with and without the adapter', async () => {
      const [plain, adapted] = await Promise.all([
        evalJson(['--model', base, ...onValid()]),
        evalJson(['--model', base, '--adapter', join(run, 'adapter'), ...onValid()]),
      ]);
      expect(plain.adaptedModules).toBe(0);
      expect(adapted.adaptedModules).toBe(2); // c_attn in each of the 2 layers
      expect(adapted.tokens).toBe(plain.tokens);
      expect(Math.abs(plain.loss - summary.evalLossBefore!)).toBeLessThan(1e-4);
      expect(Math.abs(adapted.loss - summary.evalLossAfter!)).toBeLessThan(1e-4);
      expect(Math.abs(adapted.perplexity - Math.exp(adapted.loss))).toBeLessThan(
        1e-6 * adapted.perplexity,
      );
    });

    it('gives the same loss on the cpu backend as on wasm', async () => {
      const args = ['--model', base, '--adapter', join(run, 'adapter'), ...onValid()];
      const [cpu, wasm] = await Promise.all([
        evalJson([...args, '--backend', 'cpu']),
        evalJson(args),
      ]);
      expect(cpu.adaptedModules).toBe(2);
      expect(Math.abs(cpu.loss - summary.evalLossAfter!)).toBeLessThan(1e-4);
      // TRL's SFT metrics from each backend's kernel: the same hits, the same mean entropy.
      expect(cpu.meanTokenAccuracy).toBe(wasm.meanTokenAccuracy);
      expect(wasm.meanTokenAccuracy).toBeGreaterThan(0.05);
      expect(Math.abs(cpu.entropy - wasm.entropy)).toBeLessThan(1e-5 * wasm.entropy);
    });
  });

  describe('generate', () => {
    const generate = async (prompt: string, seed: number, more: string[] = []) => {
      const { stdout } = await lorafleetOk([
        'generate',
        ...['--model', base, '--adapter', join(run, 'adapter'), '--prompt', prompt],
        ...['--max-new-tokens', '24', '--seed', String(seed), ...more],
      ]);
      return stdout;
    };

    it('samples the same text for the same seed, starting with the prompt', async () => {
      const [first, again, other] = await Promise.all([
        generate('abc', 7),
        generate('abc', 7),
        generate('abc', 8),
      ]);
      expect(first.startsWith('abc')).toBe(true);
      expect(first.length).toBeGreaterThan('abc\n'.length);
      expect(again).toBe(first);
      expect(other).not.toBe(first);
    });

    it('--temperature 0 decodes greedily: the seed does not matter', async () => {
      const greedy = ['--temperature', '0'];
      const [a, b] = await Promise.all([generate('abc ', 1, greedy), generate('abc ', 2, greedy)]);
      expect(a.startsWith('abc ')).toBe(true);
      expect(a.length).toBeGreaterThan('abc \n'.length);
      expect(b).toBe(a);
    });
  });

  describe('merge', () => {
    it('writes a plain model folder that evaluates like base + adapter', async () => {
      const merged = join(dir!, 'merged');
      await lorafleetOk([
        'merge',
        '--model',
        base,
        '--adapter',
        join(run, 'adapter'),
        '--out',
        merged,
      ]);
      for (const file of ['config.json', 'model.safetensors', 'tokenizer_config.json']) {
        expect(existsSync(join(merged, file)), file).toBe(true);
      }
      const alone = await evalJson(['--model', merged, ...onValid()]);
      expect(alone.adaptedModules).toBe(0);
      expect(Math.abs(alone.loss - summary.evalLossAfter!)).toBeLessThan(1e-4);
      // Not the base model under another name.
      expect(Math.abs(alone.loss - summary.evalLossBefore!)).toBeGreaterThan(1e-2);
    });
  });

  describe('train --full-finetune', () => {
    it('saves a model folder that eval loads', async () => {
      const full = join(dir!, 'full');
      await lorafleetOk([
        'train',
        '--full-finetune',
        ...['--model', base, '--data', trainData, '--eval-data', validData, '--out', full],
        ...['--steps', '8', '--lr', '1e-3', '--seq-len', SEQ_LEN],
      ]);
      const fullSummary = await readJson<TrainSummary>(join(full, 'summary.json'));
      expect(fullSummary).toMatchObject({ mode: 'full', steps: 8, saved: join(full, 'model') });
      const fullMetrics = (await readFile(join(full, 'metrics.jsonl'), 'utf8'))
        .trimEnd()
        .split('\n');
      expectLossWindows(
        fullSummary,
        fullMetrics.map((l) => JSON.parse(l) as MetricsLine),
      );
      expect(existsSync(join(full, 'adapter'))).toBe(false);
      const tuned = await evalJson(['--model', join(full, 'model'), ...onValid()]);
      expect(Math.abs(tuned.loss - fullSummary.evalLossAfter!)).toBeLessThan(1e-4);
      expect(tuned.loss).toBeLessThan(fullSummary.evalLossBefore! - 0.05);
    });
  });
});
