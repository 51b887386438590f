// The reduced QR decomposition by Householder reflections, in float64, with
// LAPACK's conventions (dgeqrf + dorgqr, what torch.linalg.qr calls): the
// same Q and R, signs included, so OLoRA's factors equal PEFT's.
import { type Matrix, matrix } from './matrix.js';

/** m = q r: q [rows, k] with orthonormal columns, r [k, cols] upper triangular, k = min(rows, cols). */
export interface Qr {
  q: Matrix;
  r: Matrix;
}

/**
 * The reduced QR of `m` [M, N]. Step k reflects column k's entries from row
 * k down onto e_k (LAPACK's dlarfg): R[k][k] = -sign(a_kk) |x| (+ for a zero
 * a_kk made negative, as LAPACK), so a column already zero below its
 * diagonal is left as it is (tau 0).
 */
export function qr(m: Matrix): Qr {
  const { rows: M, cols: N } = m;
  const K = Math.min(M, N);
  const a = Float64Array.from(m.data); // [M, N], becomes R above the diagonal
  const reflectors: { v: Float64Array; tau: number }[] = [];
  for (let k = 0; k < K; k++) {
    const v = new Float64Array(M - k); // v[0] = 1
    v[0] = 1;
    let below = 0;
    for (let i = k + 1; i < M; i++) below += a[i * N + k]! ** 2;
    const alpha = a[k * N + k]!;
    if (below === 0) {
      reflectors.push({ v, tau: 0 }); // H = I
      continue;
    }
    const beta = (alpha >= 0 ? -1 : 1) * Math.hypot(alpha, Math.sqrt(below));
    const tau = (beta - alpha) / beta;
    for (let i = k + 1; i < M; i++) v[i - k] = a[i * N + k]! / (alpha - beta);
    a[k * N + k] = beta;
    for (let i = k + 1; i < M; i++) a[i * N + k] = 0;
    applyReflector(a, N, k, k + 1, N, v, tau);
    reflectors.push({ v, tau });
  }
  const r = matrix(K, N);
  for (let i = 0; i < K; i++) for (let j = i; j < N; j++) r.data[i * N + j] = a[i * N + j]!;
  // Q = H_0 H_1 ... H_{K-1} applied to the first K columns of the identity, last reflector first.
  const q = matrix(M, K);
  for (let i = 0; i < K; i++) q.data[i * K + i] = 1;
  for (let k = K - 1; k >= 0; k--) {
    const { v, tau } = reflectors[k]!;
    if (tau !== 0) applyReflector(q.data, K, k, k, K, v, tau);
  }
  return { q, r };
}

/** (I - tau v v^T) applied to rows `top`.. and columns [from, to) of row-major `x` with `cols` columns. */
function applyReflector(
  x: Float64Array,
  cols: number,
  top: number,
  from: number,
  to: number,
  v: Float64Array,
  tau: number,
): void {
  for (let j = from; j < to; j++) {
    let s = 0;
    for (let i = 0; i < v.length; i++) s += v[i]! * x[(top + i) * cols + j]!;
    s *= tau;
    for (let i = 0; i < v.length; i++) x[(top + i) * cols + j]! -= s * v[i]!;
  }
}
