// `lorafleet extract` against deltas whose spectrum the test knows: an exact
// rank-2 change (kept whole, and merged back bit-close to the tuned model) and
// a full-rank one (kept share = top-r energy, checked with our own SVD); and
// the changes an adapter cannot carry (layer norm, bias, embedding) reported.
import { join } from 'node:path';
import { Rng, matrix, svd } from '@lorafleet/core';
import {
  type Gpt2Config,
  type WeightMap,
  gpt2ConfigFromJson,
  randomGpt2Weights,
  readGpt2Weights,
  saveByteTokenizerConfig,
  writeGpt2Folder,
} from '@lorafleet/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY_CONFIG, ensureBuilt, lorafleetOk, makeTempDir, removeDir } from './helpers.js';

interface ExtractReport {
  rank: number;
  modules: { module: string; shape: [number, number]; energyKept: number; deltaNorm: number }[];
  uncarried: { name: string; kind: string; shape: number[]; maxAbsChange: number }[];
}

const config: Gpt2Config = gpt2ConfigFromJson(TINY_CONFIG, 'TINY_CONFIG');
const C_ATTN = Array.from({ length: config.nLayer }, (_, i) => `transformer.h.${i}.attn.c_attn`);

/** A copy of `weights` where each c_attn weight ([in, out], Conv1D) has `delta(in, out)` added. */
function withCAttnDelta(
  weights: WeightMap,
  delta: (inF: number, out: number) => Float64Array,
): WeightMap {
  const tuned: WeightMap = new Map();
  for (const [name, w] of weights) {
    const data = Float32Array.from(w.data);
    if (C_ATTN.includes(name.replace(/\.weight$/, ''))) {
      const [inF, out] = w.shape as [number, number];
      delta(inF, out).forEach((d, i) => (data[i] = data[i]! + d));
    }
    tuned.set(name, { shape: w.shape, data });
  }
  return tuned;
}

/** sum_k x_k y_k^T over `rank` random pairs: [inF, out] row-major, rank exactly `rank`. */
function lowRankDelta(rng: Rng, rank: number) {
  return (inF: number, out: number): Float64Array => {
    const d = new Float64Array(inF * out);
    for (let k = 0; k < rank; k++) {
      const x = Array.from({ length: inF }, () => rng.normal() * 0.1);
      const y = Array.from({ length: out }, () => rng.normal() * 0.1);
      for (let i = 0; i < inF; i++) for (let j = 0; j < out; j++) d[i * out + j]! += x[i]! * y[j]!;
    }
    return d;
  };
}

function fullRankDelta(rng: Rng) {
  return (inF: number, out: number) =>
    Float64Array.from({ length: inF * out }, () => 0.01 * rng.normal());
}

async function writeModel(dir: string, weights: WeightMap): Promise<string> {
  await writeGpt2Folder(dir, config, weights);
  await saveByteTokenizerConfig(dir, { modelMaxLength: config.nPositions });
  return dir;
}

async function extract(base: string, tuned: string, rank: number, out: string) {
  const { stdout } = await lorafleetOk([
    'extract',
    ...['--base', base, '--tuned', tuned, '--rank', String(rank), '--out', out],
    ...['--target', 'c_attn', '--json'],
  ]);
  return JSON.parse(stdout) as ExtractReport;
}

let dir: string | undefined;
let base: string;
let lowRankTuned: string;
let fullRankTuned: string;
let normsTuned: string;

/** What the fine-tune of `normsTuned` changed besides c_attn, and by how much at most. */
const OTHER_CHANGES: [name: string, kind: string, by: number][] = [
  ['transformer.h.1.ln_2.weight', 'norm', 0.25],
  ['transformer.h.0.attn.c_attn.bias', 'bias', 0.125],
  ['transformer.wpe.weight', 'embedding', 0.5],
];

/** `weights` with OTHER_CHANGES applied: `by` added to one element of each. */
function withOtherChanges(weights: WeightMap): WeightMap {
  const tuned: WeightMap = new Map(weights);
  for (const [name, , by] of OTHER_CHANGES) {
    const w = weights.get(name)!;
    const data = Float32Array.from(w.data);
    data[3] = data[3]! + by;
    tuned.set(name, { shape: w.shape, data });
  }
  return tuned;
}

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('extract');
  const weights = randomGpt2Weights(config, 3);
  const rng = new Rng(11);
  base = await writeModel(join(dir, 'base'), weights);
  lowRankTuned = await writeModel(
    join(dir, 'tuned-rank2'),
    withCAttnDelta(weights, lowRankDelta(rng, 2)),
  );
  fullRankTuned = await writeModel(
    join(dir, 'tuned-full'),
    withCAttnDelta(weights, fullRankDelta(rng)),
  );
  normsTuned = await writeModel(
    join(dir, 'tuned-norms'),
    withOtherChanges(withCAttnDelta(weights, lowRankDelta(rng, 2))),
  );
}, 300_000);

afterAll(() => removeDir(dir));

describe.concurrent('lorafleet extract', () => {
  it('keeps all the energy of a rank-2 delta at rank 2, and merging it back gives the tuned model', async () => {
    const adapter = join(dir!, 'rank2-adapter');
    const report = await extract(base, lowRankTuned, 2, adapter);
    expect(report.rank).toBe(2);
    expect(report.modules.map((m) => m.module)).toEqual(C_ATTN);
    for (const m of report.modules) {
      expect(m.shape).toEqual([3 * config.nEmbd, config.nEmbd]); // [out, in]
      expect(m.deltaNorm).toBeGreaterThan(0.1);
      expect(m.energyKept).toBeGreaterThan(0.9999);
    }
    expect(report.uncarried).toEqual([]); // only c_attn changed: the adapter is the whole story

    const merged = join(dir!, 'merged');
    await lorafleetOk(['merge', '--model', base, '--adapter', adapter, '--out', merged]);
    const [want, got, before] = await Promise.all([
      readGpt2Weights(lowRankTuned, config),
      readGpt2Weights(merged, config),
      readGpt2Weights(base, config),
    ]);
    const maxGap = (x: WeightMap, y: WeightMap) => {
      let gap = 0;
      for (const [name, w] of x) {
        const other = y.get(name)!.data;
        w.data.forEach((v, i) => (gap = Math.max(gap, Math.abs(v - other[i]!))));
      }
      return gap;
    };
    expect(maxGap(want, got)).toBeLessThan(1e-4);
    expect(maxGap(want, before)).toBeGreaterThan(1e-2); // the delta is there to be recovered
  });

  it('keeps the top-3 share of a full-rank delta at rank 3', async () => {
    const report = await extract(base, fullRankTuned, 3, join(dir!, 'rank3-adapter'));
    const [b, t] = await Promise.all([
      readGpt2Weights(base, config),
      readGpt2Weights(fullRankTuned, config),
    ]);
    expect(report.modules.map((m) => m.module)).toEqual(C_ATTN);
    for (const m of report.modules) {
      const name = `${m.module}.weight`;
      const [inF, out] = b.get(name)!.shape as [number, number];
      const tuned = t.get(name)!.data;
      // Singular values do not depend on the layout: the stored [in, out] delta will do.
      const delta = matrix(
        inF,
        out,
        Array.from(b.get(name)!.data, (v, i) => tuned[i]! - v),
      );
      const squares = Array.from(svd(delta).s, (s) => s * s);
      const total = squares.reduce((x, y) => x + y, 0);
      const top3 = squares.slice(0, 3).reduce((x, y) => x + y, 0);
      expect(top3 / total).toBeLessThan(0.9); // a spread spectrum, or the check proves little
      expect(Math.abs(m.energyKept - top3 / total)).toBeLessThan(1e-6);
      expect(Math.abs(m.deltaNorm - Math.sqrt(total))).toBeLessThan(1e-6 * Math.sqrt(total));
    }
  });

  it('reports the norm, bias and embedding changes the adapter does not carry', async () => {
    const adapter = join(dir!, 'norms-adapter');
    const report = await extract(base, normsTuned, 2, adapter);
    expect(report.modules.every((m) => m.energyKept > 0.9999)).toBe(true);
    const byName = new Map(report.uncarried.map((c) => [c.name, c]));
    expect([...byName.keys()].sort()).toEqual(OTHER_CHANGES.map(([name]) => name).sort());
    for (const [name, kind, by] of OTHER_CHANGES) {
      const change = byName.get(name)!;
      expect(change.kind, name).toBe(kind);
      // float32 rounding of (w + by) - w
      expect(Math.abs(change.maxAbsChange - by), name).toBeLessThan(1e-6);
    }
    const { stdout } = await lorafleetOk([
      'extract',
      ...['--base', base, '--tuned', normsTuned, '--rank', '2', '--out', join(dir!, 'norms-2')],
      ...['--target', 'c_attn'],
    ]);
    expect(stdout).toMatch(/changed, but NOT in the adapter \(3 tensor\(s\)/);
    expect(stdout).toMatch(/transformer\.h\.1\.ln_2\.weight\s+norm\s+2\.500e-1/);
    expect(stdout).toMatch(/transformer\.wpe\.weight\s+embedding\s+5\.000e-1/);
    expect(stdout).toMatch(/transformer\.h\.0\.attn\.c_attn\.bias\s+bias\s+1\.250e-1/);
  });
});
