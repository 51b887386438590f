import { describe, expect, it } from 'vitest';
import {
  GlobalBatchSampler,
  Mulberry32,
  SAMPLER_START,
  mixSeed,
  permutation,
  shard,
  shardBounds,
  type PlannedBatch,
  type SamplerState,
} from '../src/index.js';

function take(sampler: GlobalBatchSampler, steps: number, from = SAMPLER_START): PlannedBatch[] {
  const out: PlannedBatch[] = [];
  for (const planned of sampler.batches(from)) {
    out.push(planned);
    if (out.length === steps) break;
  }
  return out;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('random', () => {
  it('draws unbiased bounded integers and stable permutations', () => {
    const rng = new Mulberry32(42);
    const counts = new Array<number>(3).fill(0);
    for (let i = 0; i < 30_000; i++) counts[rng.nextBelow(3)]!++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(400);
    // Bound 3 * 2^30: a plain r % n would land below 2^30 half the time, not a third.
    const n = 3 * 2 ** 30;
    let low = 0;
    for (let i = 0; i < 3000; i++) if (rng.nextBelow(n) < 2 ** 30) low++;
    expect(Math.abs(low / 3000 - 1 / 3)).toBeLessThan(0.05);
    const p = permutation(100, 7);
    expect(Array.from(p).sort((a, b) => a - b)).toEqual(range(100));
    expect(Array.from(permutation(100, 7))).toEqual(Array.from(p));
    expect(Array.from(permutation(100, 8))).not.toEqual(Array.from(p));
    // Pinned, so a change to the generator (which would reshuffle every run) is noticed.
    expect(Array.from(permutation(8, 1))).toEqual([6, 0, 2, 7, 1, 5, 4, 3]);
  });

  it('mixes seed and epoch into distinct seeds', () => {
    const seeds = new Set(range(1000).map((e) => mixSeed(5, e)));
    expect(seeds.size).toBe(1000);
    expect(mixSeed(5, 0)).not.toBe(mixSeed(6, 0));
  });
});

describe('GlobalBatchSampler', () => {
  it('visits every id exactly once per epoch, a short batch closing each epoch', () => {
    const sampler = new GlobalBatchSampler({ datasetSize: 23, seed: 9, globalBatchSize: 5 });
    expect(sampler.stepsPerEpoch).toBe(5);
    const batches = take(sampler, 5 * 4);
    for (let epoch = 0; epoch < 4; epoch++) {
      const inEpoch = batches.slice(epoch * 5, epoch * 5 + 5);
      expect(inEpoch.every((b) => b.epoch === epoch)).toBe(true);
      expect(inEpoch.map((b) => b.ids.length)).toEqual([5, 5, 5, 5, 3]);
      const seen = inEpoch.flatMap((b) => b.ids).sort((a, b) => a - b);
      expect(seen).toEqual(range(23));
    }
    const orders = [0, 1, 2, 3].map((e) => batches[e * 5]!.ids.join());
    expect(new Set(orders).size).toBe(4); // a new permutation each epoch
  });

  it("drops the partial batch with lastBatch 'drop', ids at most once per epoch", () => {
    const sampler = new GlobalBatchSampler({
      datasetSize: 23,
      seed: 9,
      globalBatchSize: 5,
      lastBatch: 'drop',
    });
    expect(sampler.stepsPerEpoch).toBe(4);
    const batches = take(sampler, 8);
    expect(batches.map((b) => b.epoch)).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
    expect(batches.every((b) => b.ids.length === 5)).toBe(true);
    expect(new Set(batches.slice(0, 4).flatMap((b) => b.ids)).size).toBe(20);
    // The epoch ends after its last full batch: the state says so at once.
    expect(batches[3]!.next).toEqual({ epoch: 1, cursor: 0 });
    expect(sampler.stateAtStep(5)).toEqual(batches[4]!.next);
    expect(
      () =>
        new GlobalBatchSampler({ datasetSize: 3, seed: 0, globalBatchSize: 4, lastBatch: 'drop' }),
    ).toThrow(/no full batch/);
  });

  it('is deterministic, and different seeds give different orders', () => {
    const config = { datasetSize: 50, seed: 1, globalBatchSize: 8 };
    const a = take(new GlobalBatchSampler(config), 20);
    expect(take(new GlobalBatchSampler(config), 20)).toEqual(a);
    const b = take(new GlobalBatchSampler({ ...config, seed: 2 }), 20);
    expect(b.map((x) => x.ids)).not.toEqual(a.map((x) => x.ids));
  });

  it('resumes from a saved JSON state with the same future', () => {
    const config = { datasetSize: 37, seed: 1234, globalBatchSize: 6 };
    const full = take(new GlobalBatchSampler(config), 30);
    for (const k of [1, 6, 7, 13, 29]) {
      const saved = JSON.stringify(full[k - 1]!.next);
      const restored = JSON.parse(saved) as SamplerState;
      const resumed = take(new GlobalBatchSampler(config), 30 - k, restored);
      expect(resumed).toEqual(full.slice(k));
    }
  });

  it('plans without advancing, and stateAtStep agrees with walking', () => {
    const sampler = new GlobalBatchSampler({ datasetSize: 37, seed: 3, globalBatchSize: 6 });
    const state = { epoch: 2, cursor: 12 };
    expect(sampler.plan(state)).toEqual(sampler.plan(state));
    expect(state).toEqual({ epoch: 2, cursor: 12 });
    let s: SamplerState = SAMPLER_START;
    for (let step = 0; step < 25; step++) {
      expect(sampler.stateAtStep(step)).toEqual(s);
      s = sampler.plan(s).next;
    }
    expect(() => sampler.plan({ epoch: 0, cursor: 38 })).toThrow(/cursor.*\[0, 37\]/);
    expect(() => sampler.plan({ epoch: -1, cursor: 0 })).toThrow(/epoch/);
  });

  it('handles a batch larger than the dataset as one short batch per epoch', () => {
    const sampler = new GlobalBatchSampler({ datasetSize: 3, seed: 0, globalBatchSize: 8 });
    const batches = take(sampler, 3);
    expect(batches.map((b) => [b.epoch, [...b.ids].sort()])).toEqual([
      [0, [0, 1, 2]],
      [1, [0, 1, 2]],
      [2, [0, 1, 2]],
    ]);
  });
});

describe('sampling strategies', () => {
  // Lengths 1..40 in a dataset of 200: each epoch is 25 batches of 8 in megabatches of 6 batches
  // (transformers' rule: a quarter of the data, up to 50), the last one a single batch.
  const lengths = Array.from({ length: 200 }, (_, i) => 1 + ((i * 37) % 40));
  const config = { datasetSize: 200, seed: 5, globalBatchSize: 8 };
  /** Mean over batches of (longest - shortest) length in the batch. */
  const spread = (batches: PlannedBatch[]) => {
    const gaps = batches.map(({ ids }) => {
      const l = ids.map((id) => lengths[id]!);
      return Math.max(...l) - Math.min(...l);
    });
    return gaps.reduce((a, b) => a + b, 0) / gaps.length;
  };

  it('group_by_length: every id once an epoch, batches of similar lengths, the longest first', () => {
    const grouped = new GlobalBatchSampler({ ...config, strategy: 'group_by_length', lengths });
    const random = new GlobalBatchSampler(config);
    for (const epoch of [0, 1]) {
      const batches = take(grouped, 25, { epoch, cursor: 0 });
      expect(batches.flatMap((b) => b.ids).sort((a, b) => a - b)).toEqual(range(200));
      expect(lengths[batches[0]!.ids[0]!]).toBe(40);
      // Random batches of 8 span ~31 of the 40 lengths; grouped ones ~7 (48 rows sorted over 40 lengths).
      expect(spread(batches)).toBeLessThan(10);
      expect(spread(take(random, 25, { epoch, cursor: 0 }))).toBeGreaterThan(25);
      // Megabatches keep the epoch random: the first holds the random order's first 48 ids
      // (but the one swapped for the longest row of all, at its front).
      const first = new Set(random.epochOrder(epoch).subarray(0, 48));
      expect(
        grouped
          .epochOrder(epoch)
          .subarray(1, 48)
          .every((id) => first.has(id)),
      ).toBe(true);
    }
    expect(grouped.epochOrder(0)).not.toEqual(grouped.epochOrder(1));
    // Resumable: the order is a pure function of (seed, epoch, lengths).
    const again = new GlobalBatchSampler({ ...config, strategy: 'group_by_length', lengths });
    expect(take(again, 10, grouped.stateAtStep(30))).toEqual(take(grouped, 40).slice(30));
  });

  it('sequential: the file order, every epoch', () => {
    const sampler = new GlobalBatchSampler({ ...config, strategy: 'sequential' });
    const batches = take(sampler, 50);
    expect(batches.slice(0, 25).flatMap((b) => b.ids)).toEqual(range(200));
    expect(batches.slice(25).flatMap((b) => b.ids)).toEqual(range(200));
  });

  it('refuses group_by_length without a length for each row', () => {
    expect(() => new GlobalBatchSampler({ ...config, strategy: 'group_by_length' })).toThrow(
      /needs the length of each of the 200 rows, got no lengths/,
    );
    expect(
      () => new GlobalBatchSampler({ ...config, strategy: 'group_by_length', lengths: [1, 2, 3] }),
    ).toThrow(/got 3 lengths/);
  });
});

describe('shard', () => {
  it('gives disjoint, balanced, contiguous shards covering the global batch', () => {
    const sampler = new GlobalBatchSampler({ datasetSize: 29, seed: 11, globalBatchSize: 7 });
    const batches = take(sampler, 10); // batch sizes 7, 7, 7, 7, 1, ...
    for (const { ids } of batches) {
      for (let worldSize = 1; worldSize <= 5; worldSize++) {
        const shards = range(worldSize).map((rank) => shard(ids, rank, worldSize));
        expect(shards.flat()).toEqual(ids); // in rank order, the global batch itself
        const sizes = shards.map((s) => s.length);
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
        expect(new Set(shards.flat()).size).toBe(ids.length);
      }
    }
  });

  it('leaves the last ranks empty when the world outnumbers the batch', () => {
    const shards = range(5).map((rank) => shard([10, 11, 12], rank, 5));
    expect(shards).toEqual([[10], [11], [12], [], []]);
    expect(shardBounds(10, 1, 4)).toEqual({ start: 3, end: 6 });
    expect(() => shard([1], 2, 2)).toThrow(/rank/);
    expect(() => shard([1], 0, 0)).toThrow(/worldSize/);
  });
});
