/** Dense row-major float64 matrix: element (i, j) lives at data[i * cols + j]. */
export interface Matrix {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float64Array;
}

function checkDimension(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`matrix: ${name} must be a non-negative integer, got ${value}`);
  }
}

/** A new matrix; `data` (row-major) is copied, so later edits to it do not leak in. Default: 0s. */
export function matrix(rows: number, cols: number, data?: ArrayLike<number>): Matrix {
  checkDimension('rows', rows);
  checkDimension('cols', cols);
  const out = new Float64Array(rows * cols);
  if (data !== undefined) {
    if (data.length !== rows * cols) {
      throw new Error(
        `matrix: data has ${data.length} elements but a ${rows}x${cols} matrix needs ` +
          `${rows * cols}`,
      );
    }
    out.set(data);
  }
  return { rows, cols, data: out };
}

export function identity(n: number): Matrix {
  const out = matrix(n, n);
  for (let i = 0; i < n; i++) out.data[i * n + i] = 1;
  return out;
}

export function transpose(m: Matrix): Matrix {
  const { rows, cols, data } = m;
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const row = i * cols;
    for (let j = 0; j < cols; j++) out[j * rows + i] = data[row + j]!;
  }
  return { rows: cols, cols: rows, data: out };
}

/** a [m, k] x b [k, n] -> [m, n]. */
export function matmul(a: Matrix, b: Matrix): Matrix {
  if (a.cols !== b.rows) {
    throw new Error(
      `matmul: shapes ${a.rows}x${a.cols} and ${b.rows}x${b.cols} do not match ` +
        `(left cols ${a.cols} != right rows ${b.rows})`,
    );
  }
  const m = a.rows;
  const inner = a.cols;
  const n = b.cols;
  const ad = a.data;
  const bd = b.data;
  const out = new Float64Array(m * n);
  // i-k-j order: the innermost loop streams one row of b into one row of out, both contiguous.
  for (let i = 0; i < m; i++) {
    const outRow = i * n;
    for (let k = 0; k < inner; k++) {
      const aik = ad[i * inner + k]!;
      if (aik === 0) continue;
      const bRow = k * n;
      for (let j = 0; j < n; j++) out[outRow + j]! += aik * bd[bRow + j]!;
    }
  }
  return { rows: m, cols: n, data: out };
}

export function frobeniusNorm(m: Matrix): number {
  // Scaled sum of squares, so entries near 1e200 do not overflow.
  let scale = 0;
  for (const x of m.data) scale = Math.max(scale, Math.abs(x));
  if (scale === 0 || !Number.isFinite(scale)) return scale;
  let sum = 0;
  for (const x of m.data) {
    const y = x / scale;
    sum += y * y;
  }
  return scale * Math.sqrt(sum);
}

/** Columns of m as contiguous arrays (views into one buffer): the layout the SVD streams over. */
export function toColumns(m: Matrix): Float64Array[] {
  const t = transpose(m).data;
  const cols: Float64Array[] = [];
  for (let j = 0; j < m.cols; j++) cols.push(t.subarray(j * m.rows, (j + 1) * m.rows));
  return cols;
}

/** Inverse of toColumns: column j of the result is cols[j] (each of length `rows`). */
export function fromColumns(rows: number, cols: readonly Float64Array[]): Matrix {
  const n = cols.length;
  const out = new Float64Array(rows * n);
  for (let j = 0; j < n; j++) {
    const col = cols[j]!;
    for (let i = 0; i < rows; i++) out[i * n + j] = col[i]!;
  }
  return { rows, cols: n, data: out };
}

export function dot(x: Float64Array, y: Float64Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * y[i]!;
  return s;
}

/** x -= alpha * y */
function subtractScaled(x: Float64Array, alpha: number, y: Float64Array): void {
  for (let i = 0; i < x.length; i++) x[i]! -= alpha * y[i]!;
}

function scale(x: Float64Array, alpha: number): void {
  for (let i = 0; i < x.length; i++) x[i]! *= alpha;
}

/**
 * Orthonormalises columns in place, in order, by modified Gram-Schmidt with re-orthogonalisation
 * (up to three passes, stopping once a pass keeps more than half the norm: Kahan-Parlett's
 * "twice is enough"). A column that is zero or lies in the span of the earlier ones is replaced by
 * a unit vector projected off them, so the result is always orthonormal. That completion is what
 * gives zero singular values well-defined singular vectors. Columns before `start` are taken as
 * orthonormal already.
 */
export function orthonormalizeColumns(cols: Float64Array[], start = 0): void {
  if (cols.length === 0) return;
  const rows = cols[0]!.length;
  if (cols.length > rows) {
    throw new Error(
      `orthonormalizeColumns: ${cols.length} columns cannot be orthonormal in R^${rows}`,
    );
  }
  let nextUnit = 0;
  for (let j = start; j < cols.length; j++) {
    const c = cols[j]!;
    const norm = Math.sqrt(dot(c, c));
    if (!(norm > 0 && projectOff(cols, j, c, norm))) {
      // Zero or dependent: take the next unit vector that keeps enough norm once projected. Some
      // e_t keeps |residual|^2 >= (rows - j) / rows >= 1 / rows, so 0.5 / rows always succeeds.
      for (let attempt = 0; ; attempt++) {
        if (attempt === rows) {
          throw new Error('orthonormalizeColumns: no unit vector completes the basis');
        }
        c.fill(0);
        c[nextUnit] = 1;
        nextUnit = (nextUnit + 1) % rows;
        if (projectOff(cols, j, c, 1) && dot(c, c) >= 0.5 / rows) break;
      }
    }
    scale(c, 1 / Math.sqrt(dot(c, c)));
  }
}

/** Projects c off cols[0..j); false if c turned out (numerically) to lie in their span. */
function projectOff(cols: Float64Array[], j: number, c: Float64Array, norm: number): boolean {
  let before = norm;
  for (let pass = 0; pass < 3; pass++) {
    for (let i = 0; i < j; i++) {
      const q = cols[i]!;
      subtractScaled(c, dot(q, c), q);
    }
    const after = Math.sqrt(dot(c, c));
    if (after === 0) return false;
    if (after > 0.5 * before) return true;
    before = after;
  }
  return false;
}

/** Q of a thin QR: orthonormal columns spanning those of m [rows, cols], completed if dependent. */
export function orthonormalColumns(m: Matrix): Matrix {
  const cols = toColumns(m);
  orthonormalizeColumns(cols);
  return fromColumns(m.rows, cols);
}
