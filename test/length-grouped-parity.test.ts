// --train-sampling-strategy group_by_length against transformers' own
// LengthGroupedSampler (test/reference/length_grouped.py, the stack of
// scripts/reference-python.sh): given the same shuffled order (its
// torch.randperm), every epoch order equals transformers' on datasets that
// make one megabatch, several, a short last one, the 50-batch cap, many equal
// lengths (the sort must be stable) and the longest row in a later megabatch.
import { describe, expect, it } from 'vitest';
import { Rng } from '@lorafleet/core';
import { referenceJson } from '@lorafleet/core/testing';
import { lengthGroupedOrder, megabatchMultiple, permutation } from '@lorafleet/data';

interface Case {
  shuffled: number[];
  lengths: number[];
  batch: number;
}

function randomCase(rng: Rng, n: number, batch: number, distinctLengths: number): Case {
  const lengths = Array.from({ length: n }, () => 1 + Math.floor(rng.uniform() * distinctLengths));
  const seed = Math.floor(rng.uniform() * 2 ** 32);
  return { shuffled: Array.from(permutation(n, seed)), lengths, batch };
}

describe('group_by_length', () => {
  it("orders each epoch as transformers' LengthGroupedSampler", () => {
    const rng = new Rng(11);
    const cases: Case[] = [
      randomCase(rng, 7, 4, 20), // fewer rows than 4 batches: one megabatch per batch
      randomCase(rng, 100, 4, 30), // 6 batches a megabatch, the last one short
      randomCase(rng, 1000, 4, 5), // 50 batches a megabatch (the cap); many equal lengths
      randomCase(rng, 64, 8, 1), // every length equal: the shuffled order itself
      randomCase(rng, 333, 3, 200),
    ];
    // The longest row in the last megabatch: it must move to the front.
    const late = randomCase(rng, 90, 5, 40);
    late.lengths[late.shuffled.at(-1)!] = 1000;
    cases.push(late);
    const theirs = referenceJson<number[][]>('length_grouped', cases);
    expect(theirs).toHaveLength(cases.length);
    for (const [i, c] of cases.entries()) {
      const ours = Array.from(lengthGroupedOrder(c.shuffled, c.lengths, c.batch));
      expect(ours, `case ${i}`).toEqual(theirs[i]);
    }
    // The cases reach each megabatch size rule, and the late longest row did move.
    expect(cases.map((c) => megabatchMultiple(c.lengths.length, c.batch))).toEqual([
      1, 6, 50, 2, 27, 4,
    ]);
    expect(theirs.at(-1)![0]).toBe(late.shuffled.at(-1));
    expect(theirs[3]).toEqual(cases[3]!.shuffled);
  }, 120_000);
});
