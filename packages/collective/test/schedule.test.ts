import { describe, expect, it } from 'vitest';
import { allGatherStep, frames, ownerOf, reduceScatterStep, segments } from '../src/index.js';

describe('segments', () => {
  it.each([
    [0, 3],
    [2, 5],
    [10, 3],
    [100_003, 4],
  ])('cover %i elements in %i contiguous pieces differing by at most one', (length, n) => {
    const segs = segments(length, n);
    expect(segs).toHaveLength(n);
    expect(segs.reduce((end, s) => (expect(s.start).toBe(end), end + s.length), 0)).toBe(length);
    const sizes = segs.map((s) => s.length);
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
  });

  it('split into bounded frames, an empty segment being one empty frame', () => {
    expect(frames(0, 4)).toEqual([{ start: 0, length: 0 }]);
    expect(frames(9, 4).map((f) => f.length)).toEqual([4, 4, 1]);
  });
});

describe.each([2, 3, 4, 7])('the schedule of a ring of %i', (n) => {
  // Symbolic run: each rank's segment holds the list of ranks summed into it, in order.
  it('sums segment s in ring order from rank s, on its owner, then gives everyone that sum', () => {
    const held = Array.from({ length: n }, (_, r) => Array.from({ length: n }, () => [r]));
    for (let k = 0; k < n - 1; k++) {
      const sent = held.map((segs, r) => segs[reduceScatterStep(r, n, k).send]!.slice());
      for (let r = 0; r < n; r++) {
        const { receive } = reduceScatterStep(r, n, k);
        const left = (r + n - 1) % n;
        expect(reduceScatterStep(left, n, k).send).toBe(receive);
        held[r]![receive] = [...sent[left]!, r];
      }
    }
    for (let s = 0; s < n; s++) {
      const order = Array.from({ length: n }, (_, i) => (s + i) % n);
      expect(held[ownerOf(s, n)]![s]).toEqual(order);
    }
    const final = Array.from({ length: n }, (_, s) => held[ownerOf(s, n)]![s]);
    for (let k = 0; k < n - 1; k++) {
      const sent = held.map((segs, r) => segs[allGatherStep(r, n, k).send]!.slice());
      for (let r = 0; r < n; r++) {
        const left = (r + n - 1) % n;
        held[r]![allGatherStep(r, n, k).receive] = sent[left]!;
      }
    }
    for (let r = 0; r < n; r++) expect(held[r]).toEqual(final);
  });
});
