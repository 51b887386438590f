export {
  type Matrix,
  frobeniusNorm,
  identity,
  matmul,
  matrix,
  orthonormalColumns,
  transpose,
} from './matrix.js';
export { type JacobiOptions, type Svd, svd } from './jacobi.js';
export { type Qr, qr } from './qr.js';
export {
  type RandomizedSvdOptions,
  type TruncatedSvdMethod,
  gaussianMatrix,
  randomizedSvd,
  truncatedSvd,
} from './randomized.js';

// Spectrum summaries for judging how much rank a learned LoRA update (B A) actually uses.

function checkSpectrum(fn: string, s: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < s.length; i++) {
    const x = s[i]!;
    if (!(x >= 0 && Number.isFinite(x))) {
      throw new Error(`${fn}: singular value ${i} is ${x}; expected finite and >= 0`);
    }
    sum += x;
  }
  return sum;
}

/**
 * Entropy effective rank (Roy & Vetterli 2007): exp(H(p)) with p_i = s_i / sum(s). Equals r for r
 * equal singular values and falls smoothly as the spectrum decays; 0 for an all-zero spectrum.
 */
export function effectiveRank(s: Float64Array): number {
  const sum = checkSpectrum('effectiveRank', s);
  if (sum === 0) return 0;
  let entropy = 0;
  for (const x of s) {
    if (x === 0) continue; // p log p -> 0 as p -> 0
    const p = x / sum;
    entropy -= p * Math.log(p);
  }
  return Math.exp(entropy);
}

/**
 * Fraction of squared Frobenius norm kept by the top k singular values:
 * sum_{i<k} s_i^2 / sum s_i^2.
 * 1 for an all-zero spectrum (truncation loses nothing). Assumes s sorted descending.
 */
export function energyKept(s: Float64Array, k: number): number {
  checkSpectrum('energyKept', s);
  if (!Number.isInteger(k) || k < 0) {
    throw new Error(`energyKept: k must be a non-negative integer, got ${k}`);
  }
  const max = s.reduce((a, x) => Math.max(a, x), 0);
  if (max === 0) return 1;
  // Scaled by the largest value so squares cannot overflow.
  let kept = 0;
  let total = 0;
  for (let i = 0; i < s.length; i++) {
    const y = s[i]! / max;
    total += y * y;
    if (i < k) kept += y * y;
  }
  return kept / total;
}
