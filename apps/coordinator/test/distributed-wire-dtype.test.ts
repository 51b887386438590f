// `train --workers 2 --wire-dtype bf16|fp16` with real worker processes: the
// gradients cross the ring in half precision, every rank rounds the sums the
// same way (the run's per-step replica-hash check would fail the run
// otherwise), the adapter lands near the fp32 run's, and the run's facts count
// half the bytes per step.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPeftAdapter } from '@lorafleet/core';
import {
  lorafleet,
  readJson,
  removeDir,
  writeJsonl,
  numberedPatternRecords,
  trainFixture,
} from './helpers.js';

const TRAIN = ['--steps', '20', '--batch-size', '6', '--lora-dropout', '0', '--lr', '1e-2'];
/**
 * Largest |bf16 run - fp32 run| over the adapter's weights after 20 steps at lr 1e-2. AdamW
 * moves a weight by up to ~lr per step whatever the gradient's size, so where gradients are
 * tiny their bf16 rounding (2^-8 relative) changes the direction of the normalised update and
 * the runs drift apart; bound: two steps' worth, 2 x lr (measured 1.2e-2 here). The held-out
 * loss, what training is for, must agree within 1e-3 (relative; measured 3e-7).
 */
const BF16_TOLERANCE = 2e-2;

let dir: string | undefined;
let model: string;
let data: string;
let valid: string;

beforeAll(async () => {
  ({ dir, model, data } = await trainFixture('wire-dtype', numberedPatternRecords(40)));
  valid = await writeJsonl(
    join(dir, 'valid.jsonl'),
    Array.from({ length: 9 }, (_, i) => ({ text: `abcabc abc ${i % 4}; held out ${i}.` })),
  );
}, 300_000);

afterAll(() => removeDir(dir));

const train = (out: string, more: string[]) =>
  lorafleet(
    [
      'train',
      ...['--model', model, '--data', data, '--out', join(dir!, out), '--eval-data', valid],
      ...[...TRAIN, '--workers', '2', ...more],
    ],
    180_000,
  );

async function adapterOf(out: string): Promise<Map<string, Float32Array>> {
  const adapter = await loadPeftAdapter(join(dir!, out, 'adapter'));
  const flat = new Map<string, Float32Array>();
  for (const [path, m] of adapter.modules) flat.set(`${path}.A`, m.a).set(`${path}.B`, m.b);
  return flat;
}

function maxAbsDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let max = 0;
  for (const [key, x] of a) {
    const y = b.get(key)!;
    for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i]! - y[i]!));
  }
  return max;
}

async function wireBytesOf(out: string): Promise<number> {
  const text = await readFile(join(dir!, out, 'events.jsonl'), 'utf8');
  const run = text
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as { type: string; facts?: { wireBytesPerStep: number } })
    .find((e) => e.type === 'run');
  return run!.facts!.wireBytesPerStep;
}

type Summary = { evalLossAfter: number; wireDtype: string };

describe('train --wire-dtype', () => {
  it('bf16: identical replicas every step, an adapter within tolerance of fp32, half the bytes', async () => {
    for (const [out, dtype] of [
      ['fp32', 'fp32'],
      ['bf16', 'bf16'],
    ]) {
      const result = await train(out!, ['--wire-dtype', dtype!]);
      // A replica-hash mismatch at any step fails the run (exit 1, "the replicas diverged").
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).not.toContain('diverged');
    }
    const [fp32, bf16] = [await adapterOf('fp32'), await adapterOf('bf16')];
    const diff = maxAbsDiff(fp32, bf16);
    console.log(
      `bf16 vs fp32 wire after 20 steps: max |adapter difference| ${diff.toExponential(2)}`,
    );
    expect(diff).toBeGreaterThan(0); // the gradients did travel in bf16
    expect(diff).toBeLessThan(BF16_TOLERANCE);
    const [s32, s16] = [
      await readJson<Summary>(join(dir!, 'fp32', 'summary.json')),
      await readJson<Summary>(join(dir!, 'bf16', 'summary.json')),
    ];
    expect([s32.wireDtype, s16.wireDtype]).toEqual(['fp32', 'bf16']);
    const lossDiff = Math.abs(s16.evalLossAfter - s32.evalLossAfter) / s32.evalLossAfter;
    console.log(
      `held-out loss after: fp32 ${s32.evalLossAfter}, bf16 ${s16.evalLossAfter} (relative ${lossDiff.toExponential(2)})`,
    );
    expect(lossDiff).toBeLessThan(1e-3);
    const [b32, b16] = [await wireBytesOf('fp32'), await wireBytesOf('bf16')];
    expect(b32).toBeGreaterThan(0);
    expect(b16 * 2).toBe(b32);
  }, 400_000);

  it('refuses a dtype it does not know, naming the choices', async () => {
    const result = await train('bad', ['--wire-dtype', 'fp8']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/--wire-dtype.*fp8/);
    expect(result.stderr).toMatch(/fp32.*bf16.*fp16/);
  });
});
