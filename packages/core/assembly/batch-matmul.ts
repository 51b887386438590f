// Batched matmul C[b] = op(A[b]) op(B[b]) in f32, SIMD128, compiled by
// AssemblyScript (scripts/build-kernels.mjs) into a module that imports
// tfjs-backend-wasm's memory: every pointer below is an address in that heap.
// The module owns no memory of its own (no data segment, no stack, no
// allocator): it reads A and B, and writes only C and the scratch area the
// caller allocated (batchMatMulScratchBytes).
//
// op(A) is [m, k] and op(B) is [k, n]. A is stored [m, k], or [k, m] when
// transposeA; B is stored [k, n], or [n, k] when transposeB. B is first
// packed into the scratch as panels of NR = 8 columns, each [k][8] (columns
// past n are zero; a stored-transposed B is transposed 4 x 4 with shuffles).
// A is read in place through four row pointers that step by one k: 4 bytes
// apart when A is [m, k], m * 4 when it is [k, m], so one register-blocked
// micro-kernel serves every transpose combination. It keeps a 4 x 8 tile of
// C in eight f32x4 accumulators and adds one rank-1 update per k (4 splat
// loads, 2 vector loads, 8 mul + 8 add). Packing costs O(n k) per batch
// against O(m n k) for the products.
//
// Measured alternatives (test/bench/wasm-attention shapes, one process, A/B
// over the same heap): unrolling the k loop by two ran at ~28 GFLOP/s against
// ~45 for this single-step loop (V8 keeps the simpler loop in registers), and
// packing A too cost 0-15 % more than reading it in place.

const MR: i32 = 4;
const NR: i32 = 8;

/** Bytes of scratch that batchMatMul needs for one call (the packed B panels). */
export function batchMatMulScratchBytes(_m: i32, n: i32, k: i32): i32 {
  return roundUp(n, NR) * k * 4;
}

/**
 * C[b] = op(A[b]) op(B[b]) for b in [0, batch). aBatchStride and bBatchStride
 * are in floats (0 broadcasts one matrix over the batch); C is [batch, m, n],
 * row-major. transposeA / transposeB are 0 or 1.
 */
export function batchMatMul(
  a: usize,
  b: usize,
  c: usize,
  scratch: usize,
  batch: i32,
  m: i32,
  n: i32,
  k: i32,
  aBatchStride: i32,
  bBatchStride: i32,
  transposeA: i32,
  transposeB: i32,
): void {
  if (m <= 0 || n <= 0) return;
  const packedB = scratch;
  for (let bi = 0; bi < batch; bi++) {
    const srcA = a + <usize>bi * <usize>aBatchStride * 4;
    if (bi == 0 || bBatchStride != 0) {
      const src = b + <usize>bi * <usize>bBatchStride * 4;
      if (transposeB) packRowsFromRows(src, packedB, n, k, NR);
      else packRowsFromColumns(src, packedB, n, k, NR);
    }
    multiplyDirect(srcA, transposeA, packedB, c + <usize>bi * <usize>m * <usize>n * 4, m, n, k);
  }
}

function roundUp(x: i32, to: i32): i32 {
  return ((x + to - 1) / to) * to;
}

/**
 * Packs a matrix X stored [rows, k] (row i at src + i*k) into blocks of
 * `width` rows, each [k][width]: a transpose of each block (4 x 4 at a time
 * with shuffles where the block is full). Rows past `rows` become zero.
 */
function packRowsFromRows(src: usize, dst: usize, rows: i32, k: i32, width: i32): void {
  const rowBytes = <usize>k * 4;
  for (let r0 = 0; r0 < rows; r0 += width) {
    const full = r0 + width <= rows;
    for (let q = 0; q < width; q += 4) {
      const base = src + <usize>(r0 + q) * rowBytes;
      let kk = 0;
      if (full) {
        for (; kk + 4 <= k; kk += 4) {
          const p = base + <usize>kk * 4;
          const x0 = v128.load(p);
          const x1 = v128.load(p + rowBytes);
          const x2 = v128.load(p + 2 * rowBytes);
          const x3 = v128.load(p + 3 * rowBytes);
          const t0 = v128.shuffle<f32>(x0, x1, 0, 4, 1, 5);
          const t1 = v128.shuffle<f32>(x0, x1, 2, 6, 3, 7);
          const t2 = v128.shuffle<f32>(x2, x3, 0, 4, 1, 5);
          const t3 = v128.shuffle<f32>(x2, x3, 2, 6, 3, 7);
          const out = dst + (<usize>kk * <usize>width + <usize>q) * 4;
          const step = <usize>width * 4;
          v128.store(out, v128.shuffle<f32>(t0, t2, 0, 1, 4, 5));
          v128.store(out + step, v128.shuffle<f32>(t0, t2, 2, 3, 6, 7));
          v128.store(out + 2 * step, v128.shuffle<f32>(t1, t3, 0, 1, 4, 5));
          v128.store(out + 3 * step, v128.shuffle<f32>(t1, t3, 2, 3, 6, 7));
        }
      }
      for (; kk < k; kk++) {
        for (let r = 0; r < 4; r++) {
          const row = r0 + q + r;
          const v: f32 = row < rows ? load<f32>(base + <usize>r * rowBytes + <usize>kk * 4) : 0;
          store<f32>(dst + (<usize>kk * <usize>width + <usize>(q + r)) * 4, v);
        }
      }
    }
    dst += <usize>width * <usize>k * 4;
  }
}

/**
 * Packs a matrix X stored [k, rows] (X[i, kk] at src + kk*rows + i) into
 * blocks of `width` rows, each [k][width]: plain copies of `width` floats.
 * Rows past `rows` become zero.
 */
function packRowsFromColumns(src: usize, dst: usize, rows: i32, k: i32, width: i32): void {
  const lineBytes = <usize>rows * 4;
  for (let r0 = 0; r0 < rows; r0 += width) {
    const valid = min(width, rows - r0);
    let p = src + <usize>r0 * 4;
    for (let kk = 0; kk < k; kk++) {
      if (valid == width) {
        for (let q = 0; q < width; q += 4)
          v128.store(dst + <usize>q * 4, v128.load(p + <usize>q * 4));
      } else {
        for (let q = 0; q < width; q++) {
          store<f32>(dst + <usize>q * 4, q < valid ? load<f32>(p + <usize>q * 4) : 0);
        }
      }
      p += lineBytes;
      dst += <usize>width * 4;
    }
  }
}

/**
 * C [m, n] = A [m, k] x packed B [k, n], every 4 x 8 tile through the
 * micro-kernel, panel by panel (a panel of B stays in L1 while A streams).
 * Row i of op(A) starts at a + i * ri and steps by ks per k; the pointers of
 * rows past m repeat row m - 1 (read, never stored).
 */
function multiplyDirect(
  a: usize,
  transposeA: i32,
  packedB: usize,
  c: usize,
  m: i32,
  n: i32,
  k: i32,
): void {
  const rowBytes = <usize>n * 4;
  const ri: usize = transposeA ? 4 : <usize>k * 4;
  const ks: usize = transposeA ? <usize>m * 4 : 4;
  for (let j0 = 0; j0 < n; j0 += NR) {
    const panel = packedB + <usize>j0 * <usize>k * 4;
    const cols = min(NR, n - j0);
    for (let i0 = 0; i0 < m; i0 += MR) {
      const rows = min(MR, m - i0);
      const p0 = a + <usize>i0 * ri;
      const p1 = a + <usize>min(i0 + 1, m - 1) * ri;
      const p2 = a + <usize>min(i0 + 2, m - 1) * ri;
      const p3 = a + <usize>min(i0 + 3, m - 1) * ri;
      tile(
        p0,
        p1,
        p2,
        p3,
        ks,
        panel,
        k,
        c + <usize>i0 * rowBytes + <usize>j0 * 4,
        rowBytes,
        rows,
        cols,
      );
    }
  }
}

/**
 * One 4 x 8 tile of C: sum over k of op(A)[rows, kk] (outer) packed
 * B[kk][0..8]. Stores `rows` x `cols` of it.
 */
function tile(
  p0: usize,
  p1: usize,
  p2: usize,
  p3: usize,
  ks: usize,
  bp: usize,
  k: i32,
  c: usize,
  ldc: usize,
  rows: i32,
  cols: i32,
): void {
  let c00 = f32x4.splat(0);
  let c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0);
  let c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0);
  let c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0);
  let c31 = f32x4.splat(0);
  for (let kk = 0; kk < k; kk++) {
    const b0 = v128.load(bp);
    const b1 = v128.load(bp, 16);
    let x = v128.load32_splat(p0);
    c00 = f32x4.add(c00, f32x4.mul(x, b0));
    c01 = f32x4.add(c01, f32x4.mul(x, b1));
    x = v128.load32_splat(p1);
    c10 = f32x4.add(c10, f32x4.mul(x, b0));
    c11 = f32x4.add(c11, f32x4.mul(x, b1));
    x = v128.load32_splat(p2);
    c20 = f32x4.add(c20, f32x4.mul(x, b0));
    c21 = f32x4.add(c21, f32x4.mul(x, b1));
    x = v128.load32_splat(p3);
    c30 = f32x4.add(c30, f32x4.mul(x, b0));
    c31 = f32x4.add(c31, f32x4.mul(x, b1));
    p0 += ks;
    p1 += ks;
    p2 += ks;
    p3 += ks;
    bp += 32;
  }
  if (rows == MR && cols == NR) {
    v128.store(c, c00);
    v128.store(c, c01, 16);
    v128.store(c + ldc, c10);
    v128.store(c + ldc, c11, 16);
    v128.store(c + 2 * ldc, c20);
    v128.store(c + 2 * ldc, c21, 16);
    v128.store(c + 3 * ldc, c30);
    v128.store(c + 3 * ldc, c31, 16);
    return;
  }
  storeRow(c, c00, c01, cols);
  if (rows > 1) storeRow(c + ldc, c10, c11, cols);
  if (rows > 2) storeRow(c + 2 * ldc, c20, c21, cols);
  if (rows > 3) storeRow(c + 3 * ldc, c30, c31, cols);
}

/** Stores the first `cols` (1..8) lanes of lo:hi at c. */
function storeRow(c: usize, lo: v128, hi: v128, cols: i32): void {
  if (cols >= 4) {
    v128.store(c, lo);
    storePartial(c + 16, hi, cols - 4);
  } else {
    storePartial(c, lo, cols);
  }
}

/** Stores the first `count` (0..4) lanes of v at c. */
function storePartial(c: usize, v: v128, count: i32): void {
  if (count >= 4) {
    v128.store(c, v);
    return;
  }
  if (count > 0) v128.store32_lane(c, v, 0);
  if (count > 1) v128.store32_lane(c, v, 1, 4);
  if (count > 2) v128.store32_lane(c, v, 2, 8);
}
