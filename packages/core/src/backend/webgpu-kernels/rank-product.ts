// Rank-sized products: C = alpha op(A) op(B) where one side of C has at most
// SMALL (16) entries, LoRA's r. They move a large operand through a tiny one
// (x A^T reads x [tokens, in] to make [tokens, r]), so they are bound by
// memory, and the tiled matmul (matmul-program.ts) serves them badly: a
// column of 32 x 32 tiles has 4096 / 32 = 128 workgroups, each looping over
// all of k through workgroup-memory barriers (0.1-0.2 TFLOP/s on an H200,
// 0.4-0.8 ms for products that read 12-38 MB). Here every invocation streams
// its share of the large operand, coalesced, and keeps the small side's
// sums in registers:
//   rows     A [M, K] (k contiguous) times op(B) [K, N], N <= SMALL: x A^T
//            and dh = s dy B. A workgroup of 64 owns RB rows of C; its
//            invocations take k = t, t + 64, ... (64 neighbouring values of
//            each row per step), then the 64 partial sums of each output are
//            added in workgroup memory (in a skewed order, free of bank
//            conflicts).
//   columns  A^T [M, K] times B [K, N] (A stored [K, M]: both k-major), M or
//            N <= SMALL: dA = dh^T x and dB = s dy^T h. An invocation owns one
//            column of the large side (64 neighbouring ones per workgroup)
//            and walks k, reading a row of the small side per step (the same
//            address across the workgroup); workgroup z takes chunk z of k,
//            and the chunks' partial sums are added in order by split-k.ts's
//            pass.
// Floats are summed in another order than the tiled program's: results
// differ in the last bits, as with any split-k.
import type { LoraFleetMatMulAttrs } from './matmul-kernel.js';

/** The small side's largest size (LoRA ranks up to 16). */
export const SMALL = 16;
const THREADS = 64;
const MAX_GROUPS = 65535;
/** Columns form: split k until the product has this many workgroups... */
const TARGET_WORKGROUPS = 512;
/** ...while each chunk keeps this much k. */
const MIN_CHUNK = 64;

export type RankForm = 'rows' | 'columns';

let enabled = true;

/** Turns the rank-sized kernels off (tests and the benchmark compare with the tiled program), or on. */
export function useRankProducts(on: boolean): void {
  enabled = on;
}

/** Which rank-sized kernel takes an unbatched product without bias or LoRA term (null: the tiled one). */
export function rankForm(
  p: { m: number; n: number; k: number; batch: number },
  attrs: Pick<LoraFleetMatMulAttrs, 'transposeA' | 'transposeB'>,
): RankForm | null {
  if (!enabled || p.batch !== 1) return null;
  if (!attrs.transposeA && p.n <= SMALL) return 'rows';
  if (attrs.transposeA && !attrs.transposeB && Math.min(p.m, p.n) <= SMALL) return 'columns';
  return null;
}

/** Rows of C per workgroup in the rows form: RB x N sums per invocation, at most 32. */
const rowsPerGroup = (n: number) => Math.max(1, Math.floor(32 / n));

const each = (count: number, f: (i: number) => string, sep = '\n        ') =>
  Array.from({ length: count }, (_, i) => f(i)).join(sep);

/**
 * The rows form's program: C [M, N] = alpha A [M, K] op(B); B [K, N], or
 * [N, K] with transposeB. With K % 4 == 0 each invocation reads A as vec4
 * (4 neighbouring k of a row per step).
 */
export function rowsProgram(m: number, n: number, k: number, transposeB: boolean) {
  const rb = rowsPerGroup(n);
  const w = k % 4 === 0 ? 4 : 1;
  const groups = Math.ceil(m / rb);
  const sums = rb * n;
  const bAt = (q: number, c: number) =>
    transposeB ? `B[${q} * uniforms.dimK + k + ${c}]` : `B[(k + ${c}) * ${n} + ${q}]`;
  const sum = (i: number, q: number) => `s${i}_${q}`;
  const lane = (c: number) => (w === 1 ? 'a' : `a[${c}]`);
  // Each row's contribution of this step: s_iq += sum over c of a[c] * B(k + c, q).
  const fmas = (i: number, q: number) =>
    each(w, (c) => `${sum(i, q)} = fma(${lane(c)}, b${c}_${q}, ${sum(i, q)});`, ' ');
  return {
    variableNames: ['A', 'B'],
    variableComponents: [w, 1],
    outputShape: [m, n],
    shaderKey: `lorafleet_rank_rows_n${n}_${transposeB ? 'tB' : 'nB'}_w${w}`,
    dispatchLayout: { x: [0], y: [1] },
    dispatch: [Math.min(groups, MAX_GROUPS), Math.ceil(groups / MAX_GROUPS), 1],
    workgroupSize: [THREADS, 1, 1],
    uniforms: 'dimM : i32, dimN : i32, dimK : i32, alpha : f32,',
    getUserCode: () => `
    var<workgroup> part : array<f32, ${sums * THREADS}>;
    fn main() {
      let t = i32(localIndex);
      let m0 = (i32(workgroupId.x) + i32(workgroupId.y) * ${MAX_GROUPS}) * ${rb};
      let stride = uniforms.dimK / ${w}; // A's row in loads
      ${each(rb, (i) => `let row${i} = min(m0 + ${i}, uniforms.dimM - 1) * stride;`)}
      ${each(rb, (i) => each(n, (q) => `var ${sum(i, q)} = 0.0;`, ' '))}
      for (var kw = t; kw < stride; kw += ${THREADS}) {
        let k = kw * ${w};
        ${each(w, (c) => each(n, (q) => `let b${c}_${q} = ${bAt(q, c)};`, ' '))}
        ${each(rb, (i) => `{ let a = A[row${i} + kw]; ${each(n, (q) => fmas(i, q), ' ')} }`)}
      }
      ${each(rb, (i) => each(n, (q) => `part[${(i * n + q) * THREADS} + t] = ${sum(i, q)};`, ' '))}
      workgroupBarrier();
      if (t < ${sums}) {
        var total = 0.0;
        // Skewed (j + t): the invocations read 32 different banks, not one.
        for (var j = 0; j < ${THREADS}; j++) { total += part[t * ${THREADS} + ((j + t) & ${THREADS - 1})]; }
        let row = m0 + t / ${n};
        if (row < uniforms.dimM) { result[row * ${n} + t % ${n}] = uniforms.alpha * total; }
      }
    }`,
  };
}

/** The columns form's shape: the small side, whether it is M, and the large side's vec4-ness. */
function columnsLayout(m: number, n: number) {
  const smallIsM = m <= SMALL && m <= n;
  const [big, small] = smallIsM ? [n, m] : [m, n];
  return { smallIsM, big, small, w: big % 4 === 0 ? 4 : 1 };
}

/** How the columns form splits k: chunks of kChunk (the last may be shorter). */
export function columnChunks(m: number, n: number, k: number): { kChunk: number; chunks: number } {
  const { big, w } = columnsLayout(m, n);
  const groups = Math.ceil(big / (THREADS * w));
  let splits = 1;
  while (groups * splits < TARGET_WORKGROUPS && k / (2 * splits) >= MIN_CHUNK) splits *= 2;
  const kChunk = Math.ceil(k / splits);
  return { kChunk, chunks: Math.ceil(k / kChunk) };
}

/**
 * The columns form's program: partials [chunks, M, N] = alpha A^T B over
 * each k chunk, A stored [K, M] and B [K, N]; the large side is N when
 * M <= SMALL (dA), else M (dB). An invocation owns 4 neighbouring columns
 * of the large side (a vec4 per k) when its size is a multiple of 4, else 1.
 */
export function columnsProgram(m: number, n: number, chunks: number) {
  const { smallIsM, big, small, w } = columnsLayout(m, n);
  const [bigOp, smallOp, bigDim] = smallIsM ? ['B', 'A', 'dimN'] : ['A', 'B', 'dimM'];
  const groups = Math.ceil(big / (THREADS * w));
  const type = w === 4 ? 'vec4<f32>' : 'f32';
  const out = (q: number, c: number) => {
    const col = w === 4 ? `g * 4 + ${c}` : 'g';
    return smallIsM ? `${q} * uniforms.dimN + ${col}` : `(${col}) * ${small} + ${q}`;
  };
  const value = (q: number, c: number) => (w === 4 ? `s${q}[${c}]` : `s${q}`);
  return {
    variableNames: ['A', 'B'],
    variableComponents: smallIsM ? [1, w] : [w, 1],
    outputShape: [chunks, m, n],
    shaderKey: `lorafleet_rank_columns_${smallIsM ? 'm' : 'n'}${small}_w${w}`,
    dispatchLayout: { x: [2], y: [1], z: [0] },
    dispatch: [Math.min(groups, MAX_GROUPS), Math.ceil(groups / MAX_GROUPS), chunks],
    workgroupSize: [THREADS, 1, 1],
    uniforms: 'dimM : i32, dimN : i32, dimK : i32, alpha : f32, kChunk : i32,',
    getUserCode: () => `
    fn main() {
      let row = uniforms.${bigDim} / ${w}; // the large side's row in loads
      let g = (i32(workgroupId.x) + i32(workgroupId.y) * ${MAX_GROUPS}) * ${THREADS} + i32(localIndex);
      let chunk = i32(workgroupId.z);
      let kBegin = chunk * uniforms.kChunk;
      let kEnd = min(kBegin + uniforms.kChunk, uniforms.dimK);
      let gc = min(g, row - 1);
      ${each(small, (q) => `var s${q} = ${type}(0.0);`, ' ')}
      for (var k = kBegin; k < kEnd; k++) {
        let x = ${bigOp}[k * row + gc];
        let r = k * ${small};
        ${each(small, (q) => `s${q} = fma(x, ${type}(${smallOp}[r + ${q}]), s${q});`, ' ')}
      }
      if (g < row) {
        let base = chunk * uniforms.dimM * uniforms.dimN;
        ${each(small, (q) => each(w, (c) => `result[base + ${out(q, c)}] = uniforms.alpha * ${value(q, c)};`, ' '), '\n        ')}
      }
    }`,
  };
}
