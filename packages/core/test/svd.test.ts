import { describe, expect, it } from 'vitest';

import {
  type Matrix,
  type Svd,
  effectiveRank,
  energyKept,
  frobeniusNorm,
  gaussianMatrix,
  identity,
  matmul,
  matrix,
  orthonormalColumns,
  randomizedSvd,
  svd,
  transpose,
  truncatedSvd,
} from '../src/svd/index.js';

/** u * diag(s) * v^T */
function compose(u: Matrix, s: ArrayLike<number>, v: Matrix): Matrix {
  const us = matrix(u.rows, u.cols, u.data);
  for (let i = 0; i < u.rows; i++) {
    for (let j = 0; j < u.cols; j++) us.data[i * u.cols + j]! *= s[j]!;
  }
  return matmul(us, transpose(v));
}

function difference(a: Matrix, b: Matrix): Matrix {
  return matrix(
    a.rows,
    a.cols,
    a.data.map((x, i) => x - b.data[i]!),
  );
}

/** max |Q^T Q - I| */
function orthonormalityError(q: Matrix): number {
  return Math.max(...difference(matmul(transpose(q), q), identity(q.cols)).data.map(Math.abs));
}

/** A = U diag(s) V^T with random orthonormal U, V: the singular values are known exactly. */
function withSpectrum(rows: number, cols: number, s: number[], seed: number): Matrix {
  const u = orthonormalColumns(gaussianMatrix(rows, s.length, seed));
  const v = orthonormalColumns(gaussianMatrix(cols, s.length, seed + 1));
  return compose(u, s, v);
}

/** The contract every thin SVD result must meet, whatever the input. */
function expectValidSvd(a: Matrix, r: Svd): void {
  const k = Math.min(a.rows, a.cols);
  expect([r.u.rows, r.u.cols, r.s.length, r.v.rows, r.v.cols]).toEqual([a.rows, k, k, a.cols, k]);
  for (let i = 0; i < k; i++) {
    expect(r.s[i]).toBeGreaterThanOrEqual(0);
    if (i > 0) expect(r.s[i]).toBeLessThanOrEqual(r.s[i - 1]!);
  }
  expect(orthonormalityError(r.u)).toBeLessThan(1e-10);
  expect(orthonormalityError(r.v)).toBeLessThan(1e-10);
  const residual = frobeniusNorm(difference(compose(r.u, r.s, r.v), a));
  expect(residual).toBeLessThanOrEqual(1e-12 * Math.max(frobeniusNorm(a), 1e-300));
  // Sign convention: the largest-magnitude entry of each v column is positive.
  for (let j = 0; j < k; j++) {
    let big = 0;
    for (let i = 0; i < r.v.rows; i++) {
      const x = r.v.data[i * k + j]!;
      if (Math.abs(x) > Math.abs(big)) big = x;
    }
    expect(big).toBeGreaterThan(0);
  }
}

function expectSpectrum(actual: Float64Array, expected: number[], relTol: number): void {
  const scale = Math.max(...expected);
  expected.forEach((e, i) => {
    expect(Math.abs(actual[i]! - e)).toBeLessThanOrEqual(relTol * (e === 0 ? scale : e));
  });
}

describe('matrix helpers', () => {
  it('multiplies, transposes and measures', () => {
    const a = matrix(2, 3, [1, 2, 3, 4, 5, 6]);
    const b = matrix(3, 2, [7, 8, 9, 10, 11, 12]);
    expect(Array.from(matmul(a, b).data)).toEqual([58, 64, 139, 154]);
    expect(Array.from(transpose(a).data)).toEqual([1, 4, 2, 5, 3, 6]);
    expect(frobeniusNorm(matrix(1, 2, [3, 4]))).toBe(5);
    expect(frobeniusNorm(matrix(1, 2, [3e200, -4e200]))).toBeCloseTo(5e200, -190);
  });

  it('rejects bad shapes, naming them', () => {
    expect(() => matmul(matrix(2, 3), matrix(2, 3))).toThrow(/2x3 and 2x3/);
    expect(() => matrix(2, 2, [1, 2, 3])).toThrow(/3 elements.*2x2/);
    expect(() => matrix(-1, 2)).toThrow(/rows/);
  });

  it('orthonormalises dependent and zero columns into a full basis', () => {
    // Columns: e0 + e1, a copy of it, zero, 2 e2.
    const m = matrix(4, 4, [1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]);
    const q = orthonormalColumns(m);
    expect(orthonormalityError(q)).toBeLessThan(1e-14);
    expect(q.data[0]).toBeCloseTo(Math.SQRT1_2, 14); // first column keeps its direction
    expect(q.data[4]).toBeCloseTo(Math.SQRT1_2, 14);
  });
});

describe('svd (one-sided Jacobi)', () => {
  const shapes: [string, number, number][] = [
    ['square', 30, 30],
    ['tall', 40, 12],
    ['wide', 12, 40],
  ];
  for (const [name, rows, cols] of shapes) {
    it(`recovers a known spectrum: ${name} ${rows}x${cols}`, () => {
      const k = Math.min(rows, cols);
      const s = Array.from({ length: k }, (_, i) => 10 / (i + 1));
      const a = withSpectrum(rows, cols, s, rows * 100 + cols);
      const r = svd(a);
      expectValidSvd(a, r);
      expectSpectrum(r.s, s, 1e-12);
    });
  }

  it('handles rank 3 in 20x15: zero singular values keep orthonormal vectors', () => {
    const a = withSpectrum(20, 15, [5, 2, 0.5], 7);
    const r = svd(a);
    expectValidSvd(a, r);
    expectSpectrum(r.s, [5, 2, 0.5, ...new Array<number>(12).fill(0)], 1e-12);
  });

  it('handles repeated singular values', () => {
    const s = [3, 3, 3, 1, 1, 0.5];
    const a = withSpectrum(10, 6, s, 11);
    const r = svd(a);
    expectValidSvd(a, r);
    expectSpectrum(r.s, s, 1e-12);
  });

  it('handles an all-zero matrix with orthonormal u and v', () => {
    const a = matrix(4, 6);
    const r = svd(a);
    expectValidSvd(a, r);
    expect(Array.from(r.s)).toEqual([0, 0, 0, 0]);
  });

  it('handles 1x1, 1xN and Nx1 exactly', () => {
    const one = svd(matrix(1, 1, [-2.5]));
    expect([one.s[0], one.u.data[0], one.v.data[0]]).toEqual([2.5, -1, 1]);

    const row = svd(matrix(1, 2, [3, -4]));
    expect(row.s[0]).toBeCloseTo(5, 14);
    expect(row.u.data[0]).toBe(-1); // the sign moves to u so that v's largest entry is positive
    expect(row.v.data[0]).toBeCloseTo(-0.6, 14);
    expect(row.v.data[1]).toBeCloseTo(0.8, 14);

    const col = svd(matrix(3, 1, [1, 2, 2]));
    expect(col.s[0]).toBeCloseTo(3, 14);
    expect(col.v.data[0]).toBe(1);
    [1 / 3, 2 / 3, 2 / 3].forEach((x, i) => expect(col.u.data[i]).toBeCloseTo(x, 14));
  });

  it('keeps its accuracy on a 120x80 Gaussian matrix and on tiny and huge scales', () => {
    const a = gaussianMatrix(120, 80, 3);
    const r = svd(a);
    expectValidSvd(a, r);
    for (const scale of [1e-200, 1e200]) {
      const scaled = matrix(
        a.rows,
        a.cols,
        a.data.map((x) => x * scale),
      );
      const rs = svd(scaled);
      r.s.forEach((x, i) => expect(Math.abs(rs.s[i]! / scale - x)).toBeLessThan(1e-12 * r.s[0]!));
    }
  });

  it('rejects NaN and Infinity, naming the entry', () => {
    expect(() => svd(matrix(2, 2, [1, 2, NaN, 4]))).toThrow(/entry \(1, 0\).*NaN/);
    expect(() => svd(matrix(2, 3, [1, 2, 3, 4, 5, -Infinity]))).toThrow(/entry \(1, 2\)/);
  });

  it('throws when it runs out of sweeps', () => {
    expect(() => svd(gaussianMatrix(20, 20, 5), { maxSweeps: 1 })).toThrow(/did not converge/);
  });
});

describe('randomizedSvd', () => {
  // s_i = 0.8^i: a decaying spectrum, as learned LoRA updates tend to have.
  const spectrum = Array.from({ length: 200 }, (_, i) => 0.8 ** i);
  const a = withSpectrum(300, 200, spectrum, 42);

  it('is within 5% of the Eckart-Young optimum at rank 10', () => {
    const r = randomizedSvd(a, 10);
    expect([r.u.rows, r.u.cols, r.s.length, r.v.rows, r.v.cols]).toEqual([300, 10, 10, 200, 10]);
    expect(orthonormalityError(r.u)).toBeLessThan(1e-10);
    expect(orthonormalityError(r.v)).toBeLessThan(1e-10);
    const optimal = Math.sqrt(spectrum.slice(10).reduce((sum, x) => sum + x * x, 0));
    const error = frobeniusNorm(difference(compose(r.u, r.s, r.v), a));
    expect(error).toBeGreaterThanOrEqual(optimal * (1 - 1e-9)); // sanity: nothing beats optimal
    expect(error).toBeLessThanOrEqual(1.05 * optimal);
    expectSpectrum(r.s, spectrum.slice(0, 10), 1e-6);
  });

  it('is deterministic for a seed, and the seed matters', () => {
    const first = randomizedSvd(a, 8, { seed: 3 });
    const again = randomizedSvd(a, 8, { seed: 3 });
    const other = randomizedSvd(a, 8, { seed: 4 });
    expect(again.u.data).toEqual(first.u.data);
    expect(again.s).toEqual(first.s);
    expect(again.v.data).toEqual(first.v.data);
    expect(other.u.data).not.toEqual(first.u.data);
  });

  it('recovers an exactly low-rank matrix, completing the rank-deficient range', () => {
    const low = withSpectrum(300, 200, [4, 3, 2, 1, 0.5], 9);
    const r = randomizedSvd(low, 5);
    expect(orthonormalityError(r.u)).toBeLessThan(1e-10);
    expectSpectrum(r.s, [4, 3, 2, 1, 0.5], 1e-12);
    expect(frobeniusNorm(difference(compose(r.u, r.s, r.v), low))).toBeLessThan(1e-12);
  });

  it('falls back to the exact SVD when rank + oversample covers the matrix', () => {
    const small = gaussianMatrix(30, 20, 1);
    const exact = svd(small);
    const r = randomizedSvd(small, 15);
    expect(Array.from(r.s)).toEqual(Array.from(exact.s.slice(0, 15)));
    expect(r.u.cols).toBe(15);
    expect(r.v.data[1]).toBe(exact.v.data[1]);
  });

  it('validates rank', () => {
    const small = matrix(30, 20);
    for (const rank of [0, 2.5, 21]) {
      expect(() => randomizedSvd(small, rank)).toThrow(/rank must be an integer in 1\.\.20/);
      expect(() => truncatedSvd(small, rank)).toThrow(/rank must be an integer in 1\.\.20/);
    }
  });
});

describe('truncatedSvd', () => {
  it("'auto' is exact on small matrices; 'randomized' agrees on the leading spectrum", () => {
    const a = withSpectrum(60, 40, [9, 7, 5, 3, 1, 0.1, 0.01], 21);
    const auto = truncatedSvd(a, 4);
    expect(Array.from(auto.s)).toEqual(Array.from(svd(a).s.slice(0, 4)));
    const randomized = truncatedSvd(a, 3, { method: 'randomized', oversample: 5 });
    expectSpectrum(randomized.s, [9, 7, 5], 1e-10);
    expect(randomized.u.cols).toBe(3);
  });
});

describe('spectrum summaries', () => {
  it('effectiveRank is exp of the entropy of s / sum(s)', () => {
    expect(effectiveRank(new Float64Array([1, 1, 1, 1]))).toBeCloseTo(4, 12);
    expect(effectiveRank(new Float64Array([2, 0, 0]))).toBe(1);
    // p = (1/2, 1/4, 1/4): H = 1.5 ln 2
    expect(effectiveRank(new Float64Array([2, 1, 1]))).toBeCloseTo(2 * Math.SQRT2, 12);
    expect(effectiveRank(new Float64Array([3, 1]))).toBeCloseTo(1.7547653506, 9);
    expect(effectiveRank(new Float64Array([0, 0]))).toBe(0);
    expect(() => effectiveRank(new Float64Array([1, -1]))).toThrow(/singular value 1/);
  });

  it('energyKept is the fraction of squared norm in the top k', () => {
    expect(energyKept(new Float64Array([3, 1]), 1)).toBeCloseTo(0.9, 14);
    expect(energyKept(new Float64Array([2, 1, 1]), 2)).toBeCloseTo(5 / 6, 14);
    expect(energyKept(new Float64Array([2, 1, 1]), 0)).toBe(0);
    expect(energyKept(new Float64Array([2, 1, 1]), 5)).toBe(1);
    expect(energyKept(new Float64Array([0, 0]), 1)).toBe(1);
    expect(() => energyKept(new Float64Array([1]), 1.5)).toThrow(/k must be/);
  });
});
