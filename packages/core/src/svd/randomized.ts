import { Rng } from '../random.js';
import { type Svd, svd } from './jacobi.js';
import { type Matrix, matmul, matrix, orthonormalColumns, transpose } from './matrix.js';

export interface RandomizedSvdOptions {
  /** Extra samples beyond `rank`; 10 makes the range finder's failure odds negligible (HMT 4.2). */
  oversample?: number;
  /** Power iterations (A A^T)^q: each sharpens a slowly decaying spectrum for two passes over A. */
  powerIterations?: number;
  /** Seeds the Gaussian test matrix: the same seed gives bit-identical output. */
  seed?: number;
}

export type TruncatedSvdMethod = 'auto' | 'exact' | 'randomized';

/** Above this min(rows, cols), 'auto' trades exact Jacobi (O(mn^2)) for the randomized SVD. */
const EXACT_MAX_DIM = 256;

/**
 * Rank-`rank` truncated SVD by randomized range finding with power iterations (Halko, Martinsson,
 * Tropp 2011, algorithms 4.4 and 5.1). u: [rows, rank], s: [rank], v: [cols, rank].
 */
export function randomizedSvd(m: Matrix, rank: number, options: RandomizedSvdOptions = {}): Svd {
  checkRank(m, rank);
  const oversample = options.oversample ?? 10;
  const powerIterations = options.powerIterations ?? 2;
  const seed = options.seed ?? 0;
  checkCount('oversample', oversample);
  checkCount('powerIterations', powerIterations);
  if (!Number.isInteger(seed))
    throw new Error(`randomizedSvd: seed must be an integer, got ${seed}`);

  const samples = rank + oversample;
  // Sampling as many columns as the smaller side costs more than it saves, and is exact anyway.
  if (samples >= Math.min(m.rows, m.cols)) return truncate(svd(m), rank);

  const omega = gaussianMatrix(m.cols, samples, seed); // [cols, l]
  let q = orthonormalColumns(matmul(m, omega)); // [rows, l]
  // Orthonormalise after every product: otherwise the columns collapse onto the top singular
  // vector and the smaller singular values drown in rounding error.
  for (let it = 0; it < powerIterations; it++) {
    const z = orthonormalColumns(transpose(matmul(transpose(q), m))); // A^T Q: [cols, l]
    q = orthonormalColumns(matmul(m, z)); // [rows, l]
  }
  const b = matmul(transpose(q), m); // [l, cols]
  const small = svd(b); // u: [l, l], v: [cols, l]; v keeps svd's sign convention
  return truncate({ u: matmul(q, small.u), s: small.s, v: small.v }, rank);
}

/** Best rank-`rank` approximation's factors, exact or randomized; 'auto' picks by size. */
export function truncatedSvd(
  m: Matrix,
  rank: number,
  options: RandomizedSvdOptions & { method?: TruncatedSvdMethod } = {},
): Svd {
  checkRank(m, rank);
  const { method = 'auto', ...randomized } = options;
  const exact =
    method === 'exact' || (method === 'auto' && Math.min(m.rows, m.cols) <= EXACT_MAX_DIM);
  return exact ? truncate(svd(m), rank) : randomizedSvd(m, rank, randomized);
}

function checkRank(m: Matrix, rank: number): void {
  const max = Math.min(m.rows, m.cols);
  if (!Number.isInteger(rank) || rank < 1 || rank > max) {
    throw new Error(
      `truncated SVD: rank must be an integer in 1..${max} for a ${m.rows}x${m.cols} matrix, ` +
        `got ${rank}`,
    );
  }
}

function checkCount(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`randomizedSvd: ${name} must be a non-negative integer, got ${value}`);
  }
}

/** First k singular triplets. */
function truncate(r: Svd, k: number): Svd {
  return { u: firstColumns(r.u, k), s: r.s.slice(0, k), v: firstColumns(r.v, k) };
}

function firstColumns(m: Matrix, k: number): Matrix {
  if (k === m.cols) return m;
  const out = new Float64Array(m.rows * k);
  for (let i = 0; i < m.rows; i++) out.set(m.data.subarray(i * m.cols, i * m.cols + k), i * k);
  return { rows: m.rows, cols: k, data: out };
}

/** Standard normal entries from the project's seeded Rng (mulberry32 + Box-Muller); row-major fill order. */
export function gaussianMatrix(rows: number, cols: number, seed: number): Matrix {
  const out = matrix(rows, cols);
  const rng = new Rng(seed);
  const d = out.data;
  for (let i = 0; i < d.length; i++) d[i] = rng.normal();
  return out;
}
