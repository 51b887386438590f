import { type Matrix, fromColumns, identity, orthonormalizeColumns, transpose } from './matrix.js';

/** Thin SVD: m = u * diag(s) * v^T, with k = min(rows, cols). */
export interface Svd {
  /** [rows, k], orthonormal columns */
  u: Matrix;
  /** [k], descending, >= 0 */
  s: Float64Array;
  /** [cols, k], orthonormal columns; the largest-magnitude entry of each column is positive */
  v: Matrix;
}

export interface JacobiOptions {
  /**
   * Columns i, j count as orthogonal once |<a_i, a_j>| <= tolerance * |a_i| |a_j|. Default:
   * max(rows, cols) * eps, about the rounding error of one such dot product.
   */
  tolerance?: number;
  /** Sweeps over all column pairs before giving up. Random 768x768 needs 10; 60 is slack. */
  maxSweeps?: number;
}

/**
 * Exact thin SVD by one-sided Jacobi (Hestenes): rotate column pairs of m until all are mutually
 * orthogonal; the column norms are then the singular values. Chosen over bidiagonalisation for
 * its short code and high relative accuracy on small singular values.
 */
export function svd(m: Matrix, options: JacobiOptions = {}): Svd {
  checkFinite(m);
  if (m.rows < m.cols) {
    // Hestenes wants rows >= cols; m^T = v s u^T.
    const t = hestenes(transpose(m), options);
    return withSignConvention({ u: t.v, s: t.s, v: t.u });
  }
  return withSignConvention(hestenes(m, options));
}

function checkFinite(m: Matrix): void {
  for (let idx = 0; idx < m.data.length; idx++) {
    const x = m.data[idx]!;
    if (!Number.isFinite(x)) {
      const i = Math.floor(idx / m.cols);
      const j = idx % m.cols;
      throw new Error(
        `svd: entry (${i}, ${j}) of the ${m.rows}x${m.cols} input is ${x}; ` +
          'the SVD needs finite values',
      );
    }
  }
}

/** Power of two near 1 / max|m_ij|: keeps squared norms clear of overflow and underflow, exactly */
function exactScale(m: Matrix): number {
  let maxAbs = 0;
  for (const x of m.data) maxAbs = Math.max(maxAbs, Math.abs(x));
  if (maxAbs === 0) return 1;
  // Clamped so the factor itself stays a normal, finite double.
  return 2 ** -Math.min(1022, Math.max(-1000, Math.ceil(Math.log2(maxAbs))));
}

function hestenes(m: Matrix, options: JacobiOptions): Svd {
  const rows = m.rows;
  const n = m.cols;
  const tol = options.tolerance ?? rows * Number.EPSILON;
  const maxSweeps = options.maxSweeps ?? 60;
  if (!(tol > 0 && tol < 1)) throw new Error(`svd: tolerance must be in (0, 1), got ${tol}`);
  if (!Number.isInteger(maxSweeps) || maxSweeps < 1) {
    throw new Error(`svd: maxSweeps must be a positive integer, got ${maxSweeps}`);
  }

  // Columns of m and of v (which accumulates the rotations) live contiguously in one buffer each,
  // addressed by offset: V8 runs these loops ~1.5x faster than over per-column subarray views.
  // Pivoting permutes the offsets, never the data.
  const factor = exactScale(m);
  const a = transpose(m).data; // [n, rows]: column j of m at aOff[j]
  for (let i = 0; i < a.length; i++) a[i]! *= factor;
  const cols: Columns = {
    a,
    v: identity(n).data, // [n, n]: column j of v at vOff[j]
    aOff: Array.from({ length: n }, (_, j) => j * rows),
    vOff: Array.from({ length: n }, (_, j) => j * n),
    norm2: new Float64Array(n),
    rows,
    n,
    tol,
  };
  const { aOff, vOff, norm2 } = cols;

  let converged = false;
  for (let sweep = 0; sweep < maxSweeps && !converged; sweep++) {
    converged = true;
    // The rotations update norm2 by formula; recomputing once a sweep bounds the drift.
    for (let j = 0; j < n; j++) norm2[j] = dotAt(a, aOff[j]!, aOff[j]!, rows);
    for (let p = 0; p < n - 1; p++) {
      // de Rijk pivoting: largest remaining column first; converges faster and leaves s sorted.
      let best = p;
      for (let q = p + 1; q < n; q++) if (norm2[q]! > norm2[best]!) best = q;
      swap(aOff, p, best);
      swap(vOff, p, best);
      swap(norm2, p, best);
      if (sweepRow(cols, p)) converged = false;
    }
  }
  if (!converged) {
    throw new Error(
      `svd: one-sided Jacobi did not converge in ${maxSweeps} sweeps on a ${rows}x${n} matrix ` +
        `(tolerance ${tol}); raise maxSweeps or tolerance`,
    );
  }

  const norms = aOff.map((off) => Math.sqrt(dotAt(a, off, off, rows)));
  // Pivoting leaves s nearly sorted; a stable sort makes it exact.
  const order = Array.from({ length: n }, (_, j) => j).sort((x, y) => norms[y]! - norms[x]!);
  const s = new Float64Array(n);
  const uCols: Float64Array[] = [];
  const vCols: Float64Array[] = [];
  let firstZero = n;
  for (let k = 0; k < n; k++) {
    const j = order[k]!;
    const norm = norms[j]!;
    const col = a.subarray(aOff[j]!, aOff[j]! + rows);
    if (norm > MIN_NORM) {
      for (let i = 0; i < rows; i++) col[i]! /= norm;
      s[k] = norm / factor;
    } else {
      col.fill(0); // zero for our purposes: orthonormalizeColumns completes it below
      firstZero = Math.min(firstZero, k);
    }
    uCols.push(col);
    vCols.push(cols.v.subarray(vOff[j]!, vOff[j]! + n));
  }
  orthonormalizeColumns(uCols, firstZero);
  return { u: fromColumns(rows, uCols), s, v: fromColumns(n, vCols) };
}

/** Below this (after scaling to max|entry| ~ 1), dividing by the norm would lose precision. */
const MIN_NORM = 1e-280;

/** Working state of one Jacobi run; a plain object so the hot loop stays monomorphic. */
interface Columns {
  /** [n, rows]: column j of the scaled input at aOff[j], rotated towards u * diag(s) */
  a: Float64Array;
  /** [n, n]: column j of the accumulated rotations at vOff[j] */
  v: Float64Array;
  aOff: number[];
  vOff: number[];
  /** Squared column norms of a, kept current by the rotations */
  norm2: Float64Array;
  rows: number;
  n: number;
  tol: number;
}

/**
 * Orthogonalises column p against every later column. The dot <a_p, a_q+1> rides along with the
 * rotation of pair (p, q): one pass over memory instead of two. Returns whether anything rotated.
 */
function sweepRow(cols: Columns, p: number): boolean {
  const { a, v, aOff, vOff, norm2, rows, n, tol } = cols;
  const ap = aOff[p]!;
  const vp = vOff[p]!;
  let rotated = false;
  let g = dotAt(a, ap, aOff[p + 1]!, rows);
  for (let q = p + 1; q < n; q++) {
    const next = q + 1 < n ? aOff[q + 1]! : ap; // past the end: a harmless |a_p|^2
    const alpha = norm2[p]!;
    const beta = norm2[q]!;
    if (alpha === 0 || beta === 0 || Math.abs(g) <= tol * Math.sqrt(alpha) * Math.sqrt(beta)) {
      g = dotAt(a, ap, next, rows);
      continue;
    }
    // Smaller of the two angles that zero <a_p, a_q>; hypot avoids overflow when g is tiny.
    const zeta = (beta - alpha) / (2 * g);
    const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.hypot(1, zeta));
    if (t === 0) {
      g = dotAt(a, ap, next, rows); // the angle underflowed: as orthogonal as it gets
      continue;
    }
    rotated = true;
    const c = 1 / Math.sqrt(1 + t * t);
    const s = c * t;
    const aq = aOff[q]!;
    const gpq = g;
    g = rotateAndDot(a, ap, aq, next, rows, c, s);
    rotate(v, vp, vOff[q]!, n, c, s);
    // Exact identities for this rotation. Where one cancels badly (a column collapsing towards
    // zero, as in rank-deficient input) measure the norm instead.
    norm2[p] = alpha - t * gpq;
    norm2[q] = beta + t * gpq;
    if (norm2[p]! < 0.01 * alpha) norm2[p] = dotAt(a, ap, ap, rows);
    if (norm2[q]! < 0.01 * beta) norm2[q] = dotAt(a, aq, aq, rows);
  }
  return rotated;
}

function dotAt(x: Float64Array, i0: number, j0: number, len: number): number {
  let s = 0;
  for (let i = 0; i < len; i++) s += x[i0 + i]! * x[j0 + i]!;
  return s;
}

/** (x_p, x_q) <- (c x_p - s x_q, s x_p + c x_q). */
function rotate(x: Float64Array, p0: number, q0: number, len: number, c: number, s: number): void {
  for (let i = 0; i < len; i++) {
    const xp = x[p0 + i]!;
    const xq = x[q0 + i]!;
    x[p0 + i] = c * xp - s * xq;
    x[q0 + i] = s * xp + c * xq;
  }
}

/** rotate(), fused with the dot of the new x_p and x_z (returned). */
function rotateAndDot(
  x: Float64Array,
  p0: number,
  q0: number,
  z0: number,
  len: number,
  c: number,
  s: number,
): number {
  let g = 0;
  for (let i = 0; i < len; i++) {
    const xp = x[p0 + i]!;
    const xq = x[q0 + i]!;
    const yp = c * xp - s * xq;
    x[p0 + i] = yp;
    x[q0 + i] = s * xp + c * xq;
    g += yp * x[z0 + i]!;
  }
  return g;
}

function swap<T>(xs: { [i: number]: T }, i: number, j: number): void {
  const tmp = xs[i]!;
  xs[i] = xs[j]!;
  xs[j] = tmp;
}

/** Flips each (u, v) pair so v's largest-magnitude entry is positive: a deterministic output. */
function withSignConvention(r: Svd): Svd {
  const { u, v } = r;
  const k = r.s.length;
  for (let j = 0; j < k; j++) {
    let big = 0;
    for (let i = 0; i < v.rows; i++) {
      const x = v.data[i * k + j]!;
      if (Math.abs(x) > Math.abs(big)) big = x;
    }
    if (big >= 0) continue;
    for (let i = 0; i < v.rows; i++) v.data[i * k + j] = -v.data[i * k + j]!;
    for (let i = 0; i < u.rows; i++) u.data[i * k + j] = -u.data[i * k + j]!;
  }
  return r;
}
