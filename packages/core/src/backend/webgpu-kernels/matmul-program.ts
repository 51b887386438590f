// The project's WGSL matmul as a tfjs-backend-webgpu program (its
// WebGPUProgram interface: tfjs adds the bindings, the uniforms and `_start`;
// getUserCode supplies `main`):
//   C [batch, M, N] = alpha * op(A) op(B) (+ bias[n]) (+ beta * H L') (+ R)
// op() transposes in the loader (no transposed copy is ever made); H L' is
// the LoRA epilogue: H [M, r] times L' = L^T (L [N, r]) or L ([r, N]), a rank-r
// product added to the tile before it is written; R [M, N] a residual added
// last (unbatched: the residual stream a layer's last product adds to).
//
// Per workgroup: a TM x TN tile of C; per invocation an RM x RN block held in
// vec4 registers. Each step stages a TK-deep slice of op(A) and op(B) in
// workgroup memory, k-major (As[k][m], Bs[k][n], as vec4 along m and n), so
// that the unrolled inner loop reads RM/4 + RN/4 vec4s per k and issues
// RM * RN/4 vec4 FMAs (double-buffered tiles: the next slice is read into
// registers during the product and staged in a second buffer, one barrier per
// slice; spread tiles: an invocation's vec4 columns lie TN/RN vec4s apart, so
// neighbouring invocations read neighbouring vec4s of Bs). Global loads are vec4 when the operand's contiguous
// dimension is a multiple of 4, scalar otherwise; every load and store checks
// its bounds, so any shape works. Row strides: A's rows (untransposed) may be
// longer than K (strideA, so a K that is not a multiple of 4 can still load
// vec4 from rows padded to one; the lanes past K are masked) and C's longer
// than N (strideC: C written into a padded buffer).
import { type MatMulTile, tileName } from './tiles.js';

export interface MatMulSpec {
  tile: MatMulTile;
  transposeA: boolean;
  transposeB: boolean;
  /** 4: A's contiguous dimension (its row stride, or M when transposed) is a multiple of 4. */
  vecA: boolean;
  /** vecA with K not a multiple of 4 (rows padded by strideA): lanes past K are masked. */
  raggedA?: boolean;
  vecB: boolean;
  bias: boolean;
  /** The LoRA epilogue; `transposeL`: L is stored [N, r] (LoRA's B), else [r, N] (LoRA's A). */
  lora: null | { transposeL: boolean };
  /** R [M, N] added to C last (absent: false). */
  residual?: boolean;
}

/** The program object tfjs's runWebGPUProgram takes. */
export interface WebGpuProgramLike {
  variableNames: string[];
  variableComponents: number[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[]; y: number[]; z: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  uniforms: string;
  getUserCode(): string;
}

/** Uniforms after tfjs's own (shapes): sizes, batch strides, rank, scales. */
const UNIFORMS =
  'dimM : i32, dimN : i32, dimK : i32, batchA : i32, batchB : i32, rank : i32, alpha : f32, beta : f32, kChunk : i32, strideA : i32, strideC : i32,';

/** One operand's loader into its workgroup tile (see the file comment for the layouts). */
interface Operand {
  name: 'A' | 'B';
  shared: 'As' | 'Bs';
  /** Tile size along the outer dimension (TM for A, TN for B). */
  to: number;
  /** Uniform of the outer size (M or N). */
  outer: string;
  /** Index of this workgroup's first outer row (m0 or n0). */
  origin: string;
  base: string;
  kContiguous: boolean;
  vec: boolean;
  /** The row stride when k is contiguous (WGSL). */
  stride: string;
  /** Mask vec4 lanes at k >= kEnd (rows longer than K). */
  ragged: boolean;
}

/**
 * One operand's k slice, global -> workgroup memory, as WGSL: each invocation
 * handles elements f = localIndex + i * invocations. `fetch` reads element i
 * from global memory (0 out of bounds) into `v`, for slice origin `kStart`;
 * `store` writes `v` into the workgroup tile at vec4 offset `offset`.
 */
function loaderParts(op: Operand, tk: number, invocations: number) {
  const { name: X, shared: S, to, outer: O, origin, base, kContiguous, vec, stride } = op;
  const lanes = op.ragged
    ? ` v = select(vec4<f32>(0.0), v, vec4<i32>(gk) + vec4<i32>(0, 1, 2, 3) < vec4<i32>(kEnd));`
    : '';
  const q = to / 4; // vec4s per k row of the shared tile
  const total = (tk * to) / (vec ? 4 : 1);
  const loads = Math.ceil(total / invocations);
  const guard = total % invocations === 0 ? '' : `if (f >= ${total}u) { break; }`;
  const zero = vec ? 'vec4<f32>(0.0)' : '0.0';
  type Part = (kStart: string, offset: string) => { fetch: string; store: string };
  let part: Part;
  if (!kContiguous && vec) {
    part = (k, off) => ({
      fetch: `let kk = f / ${q}u; let o4 = f % ${q}u; let gk = ${k} + i32(kk); let go = ${origin} + i32(o4) * 4;
        if (gk < kEnd && go < ${O}) { v = ${X}[(${base} + gk * ${O} + go) / 4]; }`,
      store: `let kk = f / ${q}u; let o4 = f % ${q}u; ${S}[${off}kk * ${q}u + o4] = v;`,
    });
  } else if (!kContiguous) {
    part = (k, off) => ({
      fetch: `let kk = f / ${to}u; let o = f % ${to}u; let gk = ${k} + i32(kk); let go = ${origin} + i32(o);
        if (gk < kEnd && go < ${O}) { v = ${X}[${base} + gk * ${O} + go]; }`,
      store: `let kk = f / ${to}u; let o = f % ${to}u; ${S}[${off}kk * ${q}u + o / 4u][o % 4u] = v;`,
    });
  } else if (vec) {
    part = (k, off) => ({
      fetch: `let o = f / ${tk / 4}u; let k4 = f % ${tk / 4}u; let go = ${origin} + i32(o); let gk = ${k} + i32(k4) * 4;
        if (go < ${O} && gk < kEnd) { v = ${X}[(${base} + go * ${stride} + gk) / 4];${lanes} }`,
      store: `let o = f / ${tk / 4}u; let k4 = f % ${tk / 4}u;
        for (var c = 0u; c < 4u; c++) { ${S}[${off}(k4 * 4u + c) * ${q}u + o / 4u][o % 4u] = v[c]; }`,
    });
  } else {
    part = (k, off) => ({
      fetch: `let o = f / ${tk}u; let kk = f % ${tk}u; let go = ${origin} + i32(o); let gk = ${k} + i32(kk);
        if (go < ${O} && gk < kEnd) { v = ${X}[${base} + go * ${stride} + gk]; }`,
      store: `let o = f / ${tk}u; ${S}[${off}(f % ${tk}u) * ${q}u + o / 4u][o % 4u] = v;`,
    });
  }
  const each = (body: string) => `
      for (var i = 0u; i < ${loads}u; i++) {
        let f = localIndex + i * ${invocations}u;
        ${guard}
        ${body}
      }`;
  const type = vec ? 'vec4<f32>' : 'f32';
  return {
    /** Global -> workgroup memory in one go (the single-buffered loop). */
    load: (k: string, off: string) => {
      const { fetch, store } = part(k, off);
      return each(`var v = ${zero};
        { ${fetch} }
        { ${store} }`);
    },
    /** Declares the registers `r${X}` of one slice. */
    registers: `var r${X} : array<${type}, ${loads}>;`,
    /** Global -> registers (the next slice, while this one is multiplied). */
    prefetch: (k: string) =>
      each(`var v = ${zero};
        ${part(k, '').fetch}
        r${X}[i] = v;`),
    /** Registers -> workgroup memory at `off`. */
    commit: (off: string) =>
      each(`let v = r${X}[i];
        ${part('0', off).store}`),
  };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** The B tile's vec4 column of an invocation's j-th vec4 of columns (see MatMulTile.spread). */
function bColumn(tile: MatMulTile, j: number): string {
  return tile.spread ? `${j * (tile.tn / tile.rn)}u + tx` : `tx * ${tile.rn / 4}u + ${j}u`;
}

/** C's column of an invocation's j-th vec4 (WGSL i32), from nBase (its first). */
function cColumn(tile: MatMulTile, j: number): string {
  return `nBase + ${tile.spread ? j * (tile.tn / tile.rn) * 4 : j * 4}`;
}
const acc = (i: number, j: number) => `acc${i}_${j}`;

/** The unrolled k loop over one staged slice: RM x RN/4 vec4 FMAs per k. */
function innerProduct(tile: MatMulTile, offA = '', offB = ''): string {
  const { tm, tn, rm, rn, tk } = tile;
  const lines: string[] = [];
  for (let kk = 0; kk < tk; kk++) {
    for (let qa = 0; qa < rm / 4; qa++)
      lines.push(`a${qa} = As[${offA}${kk * (tm / 4)}u + ty * ${rm / 4}u + ${qa}u];`);
    for (let j = 0; j < rn / 4; j++)
      lines.push(`b${j} = Bs[${offB}${kk * (tn / 4)}u + ${bColumn(tile, j)}];`);
    for (const i of range(rm))
      for (const j of range(rn / 4))
        lines.push(`${acc(i, j)} = fma(vec4<f32>(a${i >> 2}[${i & 3}]), b${j}, ${acc(i, j)});`);
  }
  return lines.join('\n        ');
}

/** alpha, bias, the LoRA term, then bounded scalar stores. */
function epilogue(spec: MatMulSpec): string {
  const { rm, rn } = spec.tile;
  const col = (j: number) => cColumn(spec.tile, j);
  const lines: string[] = [];
  for (const i of range(rm))
    for (const j of range(rn / 4)) lines.push(`${acc(i, j)} *= uniforms.alpha;`);
  if (spec.bias) {
    for (const j of range(rn / 4)) {
      const n = col(j);
      lines.push(
        `let bias${j} = vec4<f32>(biasAt(${n}), biasAt(${n} + 1), biasAt(${n} + 2), biasAt(${n} + 3));`,
      );
      for (const i of range(rm)) lines.push(`${acc(i, j)} += bias${j};`);
    }
  }
  if (spec.lora) {
    const l = (n: string) => `lAt(q, ${n})`;
    lines.push(`for (var q = 0; q < uniforms.rank; q++) {`);
    for (const i of range(rm)) lines.push(`  let h${i} = uniforms.beta * hAt(mBase + ${i}, q);`);
    for (const j of range(rn / 4)) {
      const n = col(j);
      lines.push(
        `  let l${j} = vec4<f32>(${l(n)}, ${l(`${n} + 1`)}, ${l(`${n} + 2`)}, ${l(`${n} + 3`)});`,
      );
      for (const i of range(rm))
        lines.push(`  ${acc(i, j)} = fma(vec4<f32>(h${i}), l${j}, ${acc(i, j)});`);
    }
    lines.push(`}`);
  }
  if (spec.residual) {
    for (const i of range(rm))
      for (const j of range(rn / 4))
        lines.push(`${acc(i, j)} += residualAt(mBase + ${i}, ${col(j)});`);
  }
  for (const i of range(rm)) {
    for (const j of range(rn / 4)) {
      lines.push(`store(mBase + ${i}, ${col(j)}, outBase, ${acc(i, j)});`);
    }
  }
  return lines.join('\n      ');
}

function helpers(spec: MatMulSpec): string {
  const out = [
    `fn store(m : i32, n : i32, outBase : i32, v : vec4<f32>) {
      if (m >= uniforms.dimM) { return; }
      for (var c = 0; c < 4; c++) {
        if (n + c < uniforms.dimN) { result[outBase + m * uniforms.strideC + n + c] = v[c]; }
      }
    }`,
  ];
  if (spec.bias) {
    out.push(`fn biasAt(n : i32) -> f32 {
      if (n < uniforms.dimN) { return bias[n]; }
      return 0.0;
    }`);
  }
  if (spec.lora) {
    const lIndex = spec.lora.transposeL ? 'n * uniforms.rank + q' : 'q * uniforms.dimN + n';
    out.push(`fn hAt(m : i32, q : i32) -> f32 {
      if (m < uniforms.dimM) { return H[m * uniforms.rank + q]; }
      return 0.0;
    }
    fn lAt(q : i32, n : i32) -> f32 {
      if (n < uniforms.dimN) { return L[${lIndex}]; }
      return 0.0;
    }`);
  }
  if (spec.residual) {
    out.push(`fn residualAt(m : i32, n : i32) -> vec4<f32> {
      var v = vec4<f32>(0.0);
      if (m >= uniforms.dimM) { return v; }
      for (var c = 0; c < 4; c++) {
        if (n + c < uniforms.dimN) { v[c] = R[m * uniforms.dimN + n + c]; }
      }
      return v;
    }`);
  }
  return out.join('\n    ');
}

type Loader = ReturnType<typeof loaderParts>;

/** Stage a slice, barrier, multiply it, barrier: two barriers per slice. */
function singleBufferedLoop(tile: MatMulTile, la: Loader, lb: Loader): string {
  return `for (var kk0 = 0; kk0 < uniforms.kChunk; kk0 += ${tile.tk}) {
        let k0 = kBegin + kk0;
        ${la.load('k0', '')}
        ${lb.load('k0', '')}
        workgroupBarrier();
        ${innerProduct(tile)}
        workgroupBarrier();
      }`;
}

/**
 * Two workgroup buffers: while slice s is multiplied from one, slice s + 1 is
 * read from global memory into registers (its latency hidden behind the
 * FMAs), then stored into the other; one barrier per slice. Slice s + 1's
 * stores go to the buffer slice s - 1 was read from, which the previous
 * barrier has released.
 */
function doubleBufferedLoop(
  tile: MatMulTile,
  la: Loader,
  lb: Loader,
  sa: number,
  sb: number,
): string {
  const tk = tile.tk;
  return `${la.registers}
      ${lb.registers}
      ${la.load('kBegin', '')}
      ${lb.load('kBegin', '')}
      workgroupBarrier();
      var cur = 0u;
      for (var kk0 = 0; kk0 < uniforms.kChunk; kk0 += ${tk}) {
        let k0 = kBegin + kk0;
        let more = kk0 + ${tk} < uniforms.kChunk;
        if (more) {
          ${la.prefetch(`k0 + ${tk}`)}
          ${lb.prefetch(`k0 + ${tk}`)}
        }
        ${innerProduct(tile, `cur * ${sa}u + `, `cur * ${sb}u + `)}
        if (more) {
          ${la.commit(`(1u - cur) * ${sa}u + `)}
          ${lb.commit(`(1u - cur) * ${sb}u + `)}
        }
        workgroupBarrier();
        cur = 1u - cur;
      }`;
}

function userCode(spec: MatMulSpec): string {
  const { tile } = spec;
  const { tm, tn, rm, rn, tk } = tile;
  const invocations = (tm / rm) * (tn / rn);
  const a: Operand = {
    name: 'A',
    shared: 'As',
    to: tm,
    outer: 'uniforms.dimM',
    origin: 'm0',
    base: 'aBase',
    kContiguous: !spec.transposeA,
    vec: spec.vecA,
    stride: 'uniforms.strideA',
    ragged: spec.raggedA === true,
  };
  const b: Operand = {
    name: 'B',
    shared: 'Bs',
    to: tn,
    outer: 'uniforms.dimN',
    origin: 'n0',
    base: 'bBase',
    kContiguous: spec.transposeB,
    vec: spec.vecB,
    stride: 'uniforms.dimK',
    ragged: false,
  };
  const accDecl = range(rm)
    .flatMap((i) => range(rn / 4).map((j) => `var ${acc(i, j)} = vec4<f32>(0.0);`))
    .join('\n      ');
  const regs = [
    ...range(rm / 4).map((q) => `var a${q} : vec4<f32>;`),
    ...range(rn / 4).map((j) => `var b${j} : vec4<f32>;`),
  ].join(' ');
  const [la, lb] = [loaderParts(a, tk, invocations), loaderParts(b, tk, invocations)];
  const [sa, sb] = [(tk * tm) / 4, (tk * tn) / 4]; // vec4s of one slice
  const buffers = tile.db ? 2 : 1;
  return `
    var<workgroup> As : array<vec4<f32>, ${buffers * sa}>;
    var<workgroup> Bs : array<vec4<f32>, ${buffers * sb}>;
    ${helpers(spec)}
    fn main() {
      let tx = localId.x;
      let ty = localId.y;
      let batch = i32(workgroupId.z);
      let m0 = i32(workgroupId.y) * ${tm};
      let n0 = i32(workgroupId.x) * ${tn};
      // Split-k: workgroup z takes k in [kBegin, kEnd) of the one product (its partial sum goes to
      // [z, M, N]); otherwise z is the batch and kChunk = K. The k loop's bound is a uniform.
      let split = uniforms.kChunk < uniforms.dimK;
      let kBegin = select(0, batch * uniforms.kChunk, split);
      let kEnd = min(kBegin + uniforms.kChunk, uniforms.dimK);
      let aBase = select(0, batch, uniforms.batchA > 1) * uniforms.dimM * uniforms.dimK;
      let bBase = select(0, batch, uniforms.batchB > 1) * uniforms.dimK * uniforms.dimN;
      let outBase = batch * uniforms.dimM * uniforms.strideC;
      ${accDecl}
      ${regs}
      ${tile.db ? doubleBufferedLoop(tile, la, lb, sa, sb) : singleBufferedLoop(tile, la, lb)}
      let mBase = m0 + i32(ty) * ${rm};
      let nBase = n0 + i32(tx) * ${tile.spread ? 4 : rn};
      ${epilogue(spec)}
    }`;
}

/** Shader keys name everything that changes the WGSL; sizes are uniforms. */
export function matMulShaderKey(spec: MatMulSpec): string {
  const flags = [
    spec.transposeA ? 'tA' : 'nA',
    spec.transposeB ? 'tB' : 'nB',
    spec.vecA ? (spec.raggedA ? 'v4rA' : 'v4A') : 's1A',
    spec.vecB ? 'v4B' : 's1B',
    spec.bias ? 'bias' : '',
    spec.lora ? `lora${spec.lora.transposeL ? 'T' : 'N'}` : '',
    spec.residual ? 'res' : '',
  ];
  return `lorafleet_matmul_${tileName(spec.tile)}_${flags.filter(Boolean).join('_')}`;
}

/** The program for C [batch, M, N], its rows `strideC` (>= N) apart. */
export function matMulProgram(
  spec: MatMulSpec,
  batch: number,
  m: number,
  n: number,
  strideC = n,
): WebGpuProgramLike {
  const { tm, tn, rm, rn } = spec.tile;
  return {
    variableNames: [
      ...['A', 'B', ...(spec.bias ? ['bias'] : []), ...(spec.lora ? ['H', 'L'] : [])],
      ...(spec.residual ? ['R'] : []),
    ],
    variableComponents: [
      spec.vecA ? 4 : 1,
      spec.vecB ? 4 : 1,
      ...(spec.bias ? [1] : []),
      ...(spec.lora ? [1, 1] : []),
      ...(spec.residual ? [1] : []),
    ],
    outputShape: [batch, m, strideC],
    shaderKey: matMulShaderKey(spec),
    dispatchLayout: { x: [2], y: [1], z: [0] },
    dispatch: [Math.ceil(n / tn), Math.ceil(m / tm), batch],
    workgroupSize: [tn / rn, tm / rm, 1],
    uniforms: UNIFORMS,
    getUserCode: () => userCode(spec),
  };
}
