// The main job, end to end on real files: LoRA must find the teacher's rank-4 change.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { lowRankFit } from '../examples/low-rank-fit.js';
import { loadPeftAdapter } from '../src/index.js';

describe('the low-rank fit (main job)', () => {
  let out = '';
  afterAll(async () => {
    if (out) await rm(out, { recursive: true, force: true });
  });

  it('recovers a rank-4 change, merges losslessly and saves a loadable PEFT adapter', async () => {
    out = await mkdtemp(join(tmpdir(), 'lorafleet-fit-'));
    const lines: string[] = [];
    const result = await lowRankFit(
      { steps: 200, rank: 8, seed: 3, lr: 0.01, backend: 'wasm', out },
      (line) => lines.push(line),
    );
    expect(result.heldOutAfter).toBeLessThan(result.heldOutBefore / 100);
    expect(result.mergeGap).toBeLessThan(1e-5);
    for (const module of result.modules) {
      expect(module.similarity).toBeGreaterThan(0.95);
      // Rank 8 was allowed; the learned update uses about 4 directions.
      expect(module.learned[4]!).toBeLessThan(0.2 * module.learned[3]!);
    }
    const adapter = await loadPeftAdapter(result.adapterDir);
    expect([...adapter.modules.keys()].sort()).toEqual(['mlp.fc_in', 'mlp.fc_out']);
    expect(adapter.config.r).toBe(8);
    expect(lines.some((l) => l.startsWith('held-out MSE after'))).toBe(true);
  });
});
