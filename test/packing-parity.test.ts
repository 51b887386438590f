// Best-fit decreasing packing (packages/data's packBestFit) against TRL's own:
// pack_dataset with "bfd" and "bfd_split", each packed row then through
// SFTTrainer's padding-free collator (test/reference/pack_dataset.py). The
// same rows in the same order, tokens, labels (each document's first masked)
// and the position ids transformers reads, over more than one of datasets'
// map batches of 1,000 examples.
import { referenceJson } from '@lorafleet/core/testing';
import { BEST_FIT_BLOCK, IGNORE_INDEX, type TokenizedExample, packBestFit } from '@lorafleet/data';
import { beforeAll, describe, expect, it } from 'vitest';

interface TrlRow {
  input_ids: number[];
  labels: number[];
  position_ids: number[];
}

/** Example i: `lengths[i]` tokens i * 1000 + t, its first `masked[i]` labels masked (as the script makes them). */
function examples(lengths: number[], masked: number[]): TokenizedExample[] {
  return lengths.map((n, i) => {
    const ids = Int32Array.from({ length: n }, (_, t) => i * 1000 + t);
    const labels = ids.map((id, t) => (t < masked[i]! ? IGNORE_INDEX : id));
    return { ids, labels };
  });
}

/** Deterministic lengths in [1, most], many ties (the order ties keep matters). */
function lengthsOf(count: number, most: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: count }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return 1 + (s % most);
  });
}

describe('packBestFit equals TRL pack_dataset + its padding-free collator', () => {
  const cases = {
    // Short examples, one block: the docstring's shape, at a scale where ties abound.
    'one block': { lengths: lengthsOf(60, 24, 7), seqLength: 32 },
    // Longer than the row: bfd keeps their first T tokens, bfd_split places every piece.
    'over-long examples': { lengths: lengthsOf(40, 90, 11), seqLength: 32 },
    // 2,300 examples: three of datasets' map batches, binned apart.
    'three blocks': { lengths: lengthsOf(2 * BEST_FIT_BLOCK + 300, 40, 3), seqLength: 64 },
  };
  const strategies = ['bfd', 'bfd_split'] as const;
  const specs = Object.values(cases).flatMap(({ lengths, seqLength }) =>
    strategies.map((strategy) => ({
      lengths,
      masked: masking(lengths),
      seq_length: seqLength,
      strategy,
    })),
  );
  let packed: TrlRow[][] = [];
  beforeAll(() => {
    packed = referenceJson<TrlRow[][]>('pack_dataset', specs); // one Python start for all
  }, 120_000);

  Object.entries(cases).forEach(([name, { lengths, seqLength }], c) => {
    strategies.forEach((strategy, s) => {
      it(`${name}, ${strategy}`, () => {
        const masked = masking(lengths);
        const trl = packed[c * strategies.length + s]!;
        const ours = packBestFit(examples(lengths, masked), seqLength, strategy, 0);
        expect(ours.rows.length).toBe(trl.length);
        ours.rows.forEach((row, r) => {
          const want = trl[r]!;
          const n = want.input_ids.length;
          expect(row.length, `row ${r}`).toBe(n);
          expect(Array.from(row.ids.subarray(0, n)), `row ${r} ids`).toEqual(want.input_ids);
          expect(Array.from(row.labels.subarray(0, n)), `row ${r} labels`).toEqual(want.labels);
          expect(Array.from(row.positionIds!.subarray(0, n)), `row ${r}`).toEqual(
            want.position_ids,
          );
          // Padding: no labels, position 0.
          expect(row.labels.subarray(n).every((l) => l === IGNORE_INDEX)).toBe(true);
          expect(row.positionIds!.subarray(n).every((p) => p === 0)).toBe(true);
          expect(ours.firstExample[r]).toBe(Math.floor(want.input_ids[0]! / 1000));
        });
        const kept = ours.rows.reduce((sum, row) => sum + row.length, 0);
        const all = lengths.reduce((sum, n) => sum + n, 0);
        if (strategy === 'bfd_split') expect(kept).toBe(all);
        else expect(kept).toBe(all - ours.truncatedTokens);
        expect(ours.rows.length).toBeGreaterThan(1);
      });
    });
  });
});

/** Every third example's first half masked (a prompt). */
const masking = (lengths: number[]) => lengths.map((n, i) => (i % 3 === 0 ? Math.floor(n / 2) : 0));
