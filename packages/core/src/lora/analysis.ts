// Analysis of learned updates (LoRA paper, section 7): singular values of
// delta W = scaling * B A, and the subspace similarity between two updates.
import { type Matrix, matmul, matrix, transpose } from '../svd/matrix.js';
import { truncatedSvd, type Svd } from '../svd/index.js';

/** The top-`rank` singular triplets of scaling * B A (B [out, r], A [r, in], row-major). */
export function updateSvd(
  a: Float32Array,
  b: Float32Array,
  shape: { r: number; inFeatures: number; outFeatures: number },
  scaling: number,
): Svd {
  const { r, inFeatures, outFeatures } = shape;
  const delta = matmul(matrix(outFeatures, r, b), matrix(r, inFeatures, a));
  for (let i = 0; i < delta.data.length; i++) delta.data[i] = delta.data[i]! * scaling;
  // delta has rank <= r, so a rank-r truncated SVD is exact.
  const rank = Math.min(r, outFeatures, inFeatures);
  return truncatedSvd(delta, rank);
}

function leadingColumns(m: Matrix, k: number): Matrix {
  const out = matrix(m.rows, k);
  for (let i = 0; i < m.rows; i++) {
    for (let j = 0; j < k; j++) out.data[i * k + j] = m.data[i * m.cols + j]!;
  }
  return out;
}

/**
 * phi(U1, U2, i, j) = ||U1[:, :i]^T U2[:, :j]||_F^2 / min(i, j): 1 when the
 * top-i directions of one update span those of the other, 0 when orthogonal.
 */
export function subspaceSimilarity(u1: Matrix, u2: Matrix, i: number, j: number): number {
  if (u1.rows !== u2.rows) {
    throw new Error(`subspace similarity: the bases have ${u1.rows} and ${u2.rows} rows`);
  }
  if (i < 1 || j < 1 || i > u1.cols || j > u2.cols) {
    throw new Error(`subspace similarity: i=${i}, j=${j} outside 1..${u1.cols} and 1..${u2.cols}`);
  }
  const overlap = matmul(transpose(leadingColumns(u1, i)), leadingColumns(u2, j)); // [i, j]
  let sum = 0;
  for (const x of overlap.data) sum += x * x;
  return sum / Math.min(i, j);
}
