// `lorafleet inspect` on adapters the CLI trained: the per-module report, and
// the subspace similarity of an adapter with itself and with another seed's.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  SEQ_LEN,
  TINY_CONFIG,
  ensureBuilt,
  initTinyModel,
  lorafleetOk,
  makeTempDir,
  patternRecords,
  removeDir,
  writeJsonl,
} from './helpers.js';

interface InspectReport {
  config: { r: number; targetModules: string[] };
  modules: {
    module: string;
    shape: [number, number];
    r: number;
    parameters: number;
    singularValues: number[];
    effectiveRank: number;
  }[];
  comparison?: {
    module: string;
    inputTop1: number;
    inputAll: number;
    outputTop1: number;
    outputAll: number;
  }[];
}

const R = 4;
const C = TINY_CONFIG.n_embd;
/** Every adapted module and its LoRA [out, in] for --target c_attn,c_fc. */
const MODULES = new Map(
  Array.from({ length: TINY_CONFIG.n_layer }, (_, i) => [
    [`transformer.h.${i}.attn.c_attn`, [3 * C, C]],
    [`transformer.h.${i}.mlp.c_fc`, [4 * C, C]],
  ]).flat() as [string, [number, number]][],
);

let dir: string | undefined;
let seed0: string;
let seed1: string;

async function inspect(...args: string[]): Promise<InspectReport> {
  const { stdout } = await lorafleetOk(['inspect', '--json', ...args]);
  return JSON.parse(stdout) as InspectReport;
}

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('inspect');
  const base = await initTinyModel(dir, 'base');
  const data = await writeJsonl(join(dir, 'train.jsonl'), patternRecords(40));
  const train = async (seed: number) => {
    const out = join(dir!, `seed${seed}`);
    await lorafleetOk([
      'train',
      ...['--model', base, '--data', data, '--out', out, '--seed', String(seed)],
      ...['--steps', '10', '--lr', '1e-2', '--seq-len', SEQ_LEN],
      ...['--lora-r', String(R), '--target', 'c_attn,c_fc'],
    ]);
    return join(out, 'adapter');
  };
  [seed0, seed1] = await Promise.all([train(0), train(1)]);
}, 300_000);

afterAll(() => removeDir(dir));

describe.concurrent('lorafleet inspect', () => {
  it('--json describes every module: shape, r, parameters, spectrum, effective rank', async () => {
    const report = await inspect('--adapter', seed0);
    expect(report.config.r).toBe(R);
    expect(report.config.targetModules).toEqual(['c_attn', 'c_fc']);
    expect(report.modules.map((m) => m.module).sort()).toEqual([...MODULES.keys()].sort());
    for (const m of report.modules) {
      const [out, inF] = MODULES.get(m.module)!;
      expect(m.shape).toEqual([out, inF]);
      expect(m.r).toBe(R);
      expect(m.parameters).toBe(R * (inF + out));
      expect(m.singularValues).toHaveLength(R);
      m.singularValues
        .slice(1)
        .forEach((s, i) => expect(s).toBeLessThanOrEqual(m.singularValues[i]!));
      expect(m.singularValues[0]).toBeGreaterThan(0); // trained: B moved off zero
      expect(m.effectiveRank).toBeGreaterThanOrEqual(1);
      expect(m.effectiveRank).toBeLessThanOrEqual(R);
    }
  });

  it('the text report names every module', async () => {
    const { stdout } = await lorafleetOk(['inspect', '--adapter', seed0]);
    expect(stdout).toContain(`LoRA r=${R}`);
    for (const module of MODULES.keys()) expect(stdout).toContain(module);
  });

  it('--compare with itself gives similarity 1 for every module', async () => {
    const { comparison } = await inspect('--adapter', seed0, '--compare', seed0);
    expect(comparison?.map((c) => c.module).sort()).toEqual([...MODULES.keys()].sort());
    for (const c of comparison!) {
      for (const phi of [c.inputTop1, c.inputAll, c.outputTop1, c.outputAll]) {
        expect(phi).toBeCloseTo(1, 6);
      }
    }
  });

  it('--compare with another seed gives similarity below 1', async () => {
    const { comparison } = await inspect('--adapter', seed0, '--compare', seed1);
    expect(comparison).toHaveLength(MODULES.size);
    for (const c of comparison!) {
      for (const phi of [c.inputTop1, c.inputAll, c.outputTop1, c.outputAll]) {
        expect(phi).toBeGreaterThanOrEqual(0);
        expect(phi).toBeLessThanOrEqual(1 + 1e-9);
      }
      // Random A inits in 32 dimensions: 4-dim row spaces barely overlap.
      expect(c.inputAll).toBeLessThan(0.9);
    }
  });
});
