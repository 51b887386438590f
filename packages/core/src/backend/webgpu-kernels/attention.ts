// Causal self-attention without the [T, T] matrices (flash-attention style:
// scores are recomputed, never stored), forward and backward, on 'webgpu'.
// q, k, v, o: [R, T, D] with R = batch x heads; s_ij = scale q_i . k_j for
// j <= i, p_ij = exp(s_ij - lse_i):
//   LoraFleetAttnStats   q, k          -> lse [R, T]  (online max and sum of exp)
//   LoraFleetAttnOut     q, k, v, lse  -> o [R, T, D] = sum_j p_ij v_j
//   LoraFleetAttnDelta   o, dy         -> delta [R, T] = dy_i . o_i
//   LoraFleetAttnGrad    q, k, v, dy, lse, delta -> dq, dk or dv (attr `wrt`):
//     ds_ij = p_ij (dy_i . v_j - delta_i)
//     dq_i = scale sum_{j<=i} ds_ij k_j,  dk_j = scale sum_{i>=j} ds_ij q_i,
//     dv_j = sum_{i>=j} p_ij dy_i
// Soft-capping (attr `softcap`, Gemma 2): every score becomes
// c_ij = cap tanh(s_ij / cap) before the softmax, so p_ij = exp(c_ij - lse_i),
// and ds_ij above (the gradient of c_ij) is multiplied by
// dc/ds = 1 - (c_ij / cap)^2 before dq and dk.
// Dropout on the probabilities (attr `dropRate`, input `keys` [2] int32): the
// mask of ops/dropout.ts over the [R, T, T] probabilities, m_ij = scale or 0
// drawn from the hash of (keys, (r T + i) T + j), so the bits are those of
// seededDropout on the composed path's probabilities. Out sums m_ij p_ij v_j;
// backward uses ds_ij = p_ij (m_ij dy_i . v_j - delta_i) and dv_j = sum_i
// m_ij p_ij dy_i (delta_i = dy_i . o_i still, o being the dropped output);
// the statistics ignore it. No mask is stored: each kernel draws it again.
// Packed documents (input `spans` [N, 2] int32, N = batch x T, the row's
// heads sharing it): token t of batch item b attends only within its own
// document, spans[b T + t] = (its first token, its last token) in the row, so
// query i meets keys max(i - window + 1, first_i) .. i and key j meets
// queries j .. min(j + window - 1, last_j). Without spans, one document.
// Tiling: a workgroup owns ROWS consecutive rows of one [T, D] matrix (query
// rows, or key rows for dk and dv), one row per invocation, held in
// registers. It walks the rows its rows meet (keys j <= i, or queries
// i >= j) in tiles of TK: each tile of k, v (or q, dy, lse, delta) is read
// from global memory once, coalesced, into workgroup memory, and every
// invocation reads it from there (the same address across the workgroup: a
// broadcast), as vec4 when D is a multiple of 4. Memory stays O(R T D).
import { tf } from '../tf.js';
import { dropoutKeys } from '../../ops/dropout.js';
import { Gen, KEEP_WGSL } from './attention-wgsl.js';
import { webGpuMatMulChoice } from './matmul-kernel.js';
import { registerWebGpuKernels, type WebGpuKernelArgs, type WebGpuProgramRunner } from './rows.js';

export const ATTN_STATS = 'LoraFleetAttnStats';
export const ATTN_OUT = 'LoraFleetAttnOut';
export const ATTN_DELTA = 'LoraFleetAttnDelta';
export const ATTN_GRAD = 'LoraFleetAttnGrad';

export type AttnGradWrt = 'q' | 'k' | 'v';
type Info = tf.TensorInfo;

/** Rows per workgroup, one per invocation. */
const ROWS = 64;
const MAX_GROUPS = 65535;
/** Workgroup memory a tile may take: WebGPU's guaranteed minimum, so every adapter runs it. */
const TILE_BYTES = 16384;

/** What one kernel computes for its row, against each row of the other side it meets. */
interface Body {
  /** The kernel's inputs, in binding order. */
  inputs: string[];
  /** The output: [R, T] (one value per row) or [R, T, D]. */
  rowwise: boolean;
  /** 'keys': a query row meets keys j <= i; 'queries': a key row meets queries i >= j; none: its own row only. */
  over: 'keys' | 'queries' | null;
  /** [R, T, D] inputs held in registers for the invocation's own row, and [R, T] ones. */
  own: string[];
  ownScalars: string[];
  /** Inputs staged per tile of the other side: rows of D, and one value per row. */
  tile: string[];
  tileScalars: string[];
  /** Whether dropout on the probabilities changes it (the statistics and delta: no). */
  dropped: boolean;
  /** WGSL: state before the walk, one met pair (`jj` indexes the tile), the output. */
  init: (g: Gen) => string;
  pair: (g: Gen) => string;
  finish: (g: Gen) => string;
}

/** The capped score `c` of the pair and its probability `p`. */
const prob = (g: Gen, own: string, other: string, lse: string) =>
  `let c = capped(uniforms.scale * (${g.dot(own, other)}));
          let p = exp(c - ${lse});`;

/**
 * WGSL: the soft-capped score and its slope dc/ds; without a cap the identity
 * and 1, compiled in (a program of its own), so uncapped models pay nothing.
 */
const capWgsl = (cap: boolean) =>
  cap
    ? `
    fn capped(s : f32) -> f32 {
      // tanh of a large argument is NaN on some drivers (exp overflows): |s / cap| <= 15 is tanh's 1 in f32.
      return uniforms.softcap * tanh(clamp(s / uniforms.softcap, -15.0, 15.0));
    }
    fn cappedSlope(c : f32) -> f32 {
      let t = c / uniforms.softcap;
      return 1.0 - t * t;
    }`
    : `
    fn capped(s : f32) -> f32 { return s; }
    fn cappedSlope(c : f32) -> f32 { return 1.0; }`;

/** The WGSL of each program. */
const BODIES = {
  stats: {
    inputs: ['q', 'k'],
    rowwise: true,
    over: 'keys',
    own: ['q'],
    ownScalars: [],
    tile: ['k'],
    tileScalars: [],
    dropped: false,
    init: () => 'var m = -3.0e38; var l = 0.0;',
    pair: (g) => `let s = capped(uniforms.scale * (${g.dot('q', 'k')}));
          let mNew = max(m, s);
          l = l * exp(m - mNew) + exp(s - mNew);
          m = mNew;`,
    finish: () => 'setOutputAtIndex(row, m + log(l));',
  },
  out: {
    inputs: ['q', 'k', 'v', 'lse'],
    rowwise: false,
    over: 'keys',
    own: ['q'],
    ownScalars: ['lse'],
    tile: ['k', 'v'],
    tileScalars: [],
    dropped: true,
    init: (g) => g.zeroAcc(),
    pair: (g) => `${prob(g, 'q', 'k', 'lse_own')}
          ${g.accumulate(g.kept('p', 'keys'), 'v')}`,
    finish: (g) => g.writeAcc(''),
  },
  delta: {
    inputs: ['dy', 'o'],
    rowwise: true,
    over: null,
    own: [],
    ownScalars: [],
    tile: [],
    tileScalars: [],
    dropped: false,
    init: () => '',
    pair: () => '',
    finish: (g) =>
      `var s = 0.0;
        for (var c = 0; c < ${g.d}; c++) { s += dy[row * ${g.d} + c] * o[row * ${g.d} + c]; }
        setOutputAtIndex(row, s);`,
  },
  q: {
    inputs: ['q', 'k', 'v', 'dy', 'lse', 'delta'],
    rowwise: false,
    over: 'keys',
    own: ['q', 'dy'],
    ownScalars: ['lse', 'delta'],
    tile: ['k', 'v'],
    tileScalars: [],
    dropped: true,
    init: (g) => g.zeroAcc(),
    pair: (g) => `${prob(g, 'q', 'k', 'lse_own')}
          let ds = p * (${g.kept(`(${g.dot('dy', 'v')})`, 'keys')} - delta_own) * cappedSlope(c);
          ${g.accumulate('ds', 'k')}`,
    finish: (g) => g.writeAcc('uniforms.scale * '),
  },
  k: {
    inputs: ['q', 'k', 'v', 'dy', 'lse', 'delta'],
    rowwise: false,
    over: 'queries',
    own: ['k', 'v'],
    ownScalars: [],
    tile: ['q', 'dy'],
    tileScalars: ['lse', 'delta'],
    dropped: true,
    init: (g) => g.zeroAcc(),
    pair: (g) => `${prob(g, 'k', 'q', 's_lse[jj]')}
          let ds = p * (${g.kept(`(${g.dot('v', 'dy')})`, 'queries')} - s_delta[jj]) * cappedSlope(c);
          ${g.accumulate('ds', 'q')}`,
    finish: (g) => g.writeAcc('uniforms.scale * '),
  },
  v: {
    inputs: ['q', 'k', 'dy', 'lse'], // dv needs no v
    rowwise: false,
    over: 'queries',
    own: ['k'],
    ownScalars: [],
    tile: ['q', 'dy'],
    tileScalars: ['lse'],
    dropped: true,
    init: (g) => g.zeroAcc(),
    pair: (g) => `${prob(g, 'k', 'q', 's_lse[jj]')}
          ${g.accumulate(g.kept('p', 'queries'), 'dy')}`,
    finish: (g) => g.writeAcc(''),
  },
} as const satisfies Record<string, Body>;
type BodyName = keyof typeof BODIES;

/** Rows of the other side per tile: as many as TILE_BYTES holds, at most ROWS. */
export function attentionTileRows(body: Pick<Body, 'tile' | 'tileScalars'>, d: number): number {
  const perRow = 4 * (body.tile.length * d + body.tileScalars.length);
  return perRow === 0 ? 0 : Math.max(1, Math.min(ROWS, Math.floor(TILE_BYTES / perRow)));
}

/**
 * The walk over the other side's tiles. Every invocation runs every tile's
 * barriers (the loop bound is a uniform, as WGSL's uniformity rules require),
 * and a workgroup stages and multiplies only the tiles its rows meet: keys up
 * to its last query row, or queries from its first key row.
 */
function walk(b: Body, g: Gen, tk: number): string {
  if (b.over === null) return '';
  const keys = b.over === 'keys';
  const stage = [
    ...b.tile.map(
      (x) => `for (var f = i32(localIndex); f < ${tk * g.dw}; f += ${ROWS}) {
            let r = r0 + f / ${g.dw};
            s_${x}[f] = select(${g.type}(0.0), ${x}[(base + min(r, uniforms.seq - 1)) * ${g.dw} + f % ${g.dw}], r < uniforms.seq);
          }`,
    ),
    ...b.tileScalars.map(
      (x) => `for (var f = i32(localIndex); f < ${tk}; f += ${ROWS}) {
            s_${x}[f] = ${x}[base + min(r0 + f, uniforms.seq - 1)];
          }`,
    ),
  ].join('\n          ');
  // Query i meets keys j in [max(i - window + 1, first_i), i]; key j meets
  // queries i in [j, min(j + window - 1, last_j)]. A workgroup's rows start no
  // earlier than its first row's document (lead) and end no later than its
  // last row's (tail).
  const [needed, lo, hi] = keys
    ? [
        `r0 <= min(t0 + ${ROWS - 1}, uniforms.seq - 1) && r0 + ${tk} > max(t0 - uniforms.window + 1, lead)`,
        `clamp(max(tc - uniforms.window + 1, span.x) - r0, 0, ${tk})`,
        `clamp(tc - r0 + 1, 0, ${tk})`,
      ]
    : [
        `r0 + ${tk} > t0 && r0 < t0 + ${ROWS - 1} + uniforms.window && r0 <= tail`,
        `clamp(tc - r0, 0, ${tk})`,
        `clamp(min(tc + uniforms.window, span.y + 1) - r0, 0, min(${tk}, uniforms.seq - r0))`,
      ];
  return `for (var r0 = 0; r0 < uniforms.seq; r0 += ${tk}) {
        let needed = ${needed};
        if (needed) {
          ${stage}
        }
        workgroupBarrier();
        if (needed) {
          for (var jj = ${lo}; jj < ${hi}; jj++) {
            ${b.pair(g)}
          }
        }
        workgroupBarrier();
      }`;
}

/** WGSL: token t's document in batch item `item` as (first, last); without spans the whole row. */
const spanWgsl = (documents: boolean) =>
  documents
    ? `
    fn spanOf(item : i32, t : i32) -> vec2<i32> {
      let f = 2 * (item * uniforms.seq + t);
      return vec2<i32>(spans[f], spans[f + 1]);
    }`
    : `
    fn spanOf(item : i32, t : i32) -> vec2<i32> { return vec2<i32>(0, uniforms.seq - 1); }`;

function userCode(b: Body, g: Gen, tk: number, cap: boolean, documents: boolean): string {
  const shared = [
    ...b.tile.map((x) => `var<workgroup> s_${x} : array<${g.type}, ${tk * g.dw}>;`),
    ...b.tileScalars.map((x) => `var<workgroup> s_${x} : array<f32, ${tk}>;`),
  ].join('\n    ');
  return `
    ${shared}${capWgsl(cap)}${spanWgsl(documents)}${g.drop ? KEEP_WGSL : ''}
    fn main() {
      let blocks = (uniforms.seq + ${ROWS - 1}) / ${ROWS};
      let group = i32(workgroupId.x) + i32(workgroupId.y) * ${MAX_GROUPS};
      let heads = uniforms.rows / uniforms.seq;
      let head = min(group / blocks, heads - 1);
      let t0 = (group % blocks) * ${ROWS};
      let t = t0 + i32(localIndex);
      let live = t < uniforms.seq && group < heads * blocks;
      let tc = min(t, uniforms.seq - 1); // idle invocations compute on the last row, write nothing
      let base = head * uniforms.seq;
      let row = base + tc;
      let item = head / uniforms.perItem; // the batch item: its heads share its documents
      let span = spanOf(item, tc);
      let lead = spanOf(item, t0).x;
      let tail = spanOf(item, min(t0 + ${ROWS - 1}, uniforms.seq - 1)).y;
      ${b.own.map((x) => g.load(x)).join('\n      ')}
      ${b.ownScalars.map((x) => `let ${x}_own = ${x}[row];`).join('\n      ')}
      ${b.init(g)}
      ${walk(b, g, tk)}
      if (live) {
        ${b.finish(g)}
      }
    }`;
}

/** What varies a program besides its body and shapes: dropout, soft cap, packed documents. */
interface Variant {
  drop: boolean;
  cap: boolean;
  documents: boolean;
}

/** The inputs of `name` in binding order: its body's, then the spans and the dropout keys where used. */
const inputNames = (name: BodyName, v: Pick<Variant, 'drop' | 'documents'>): string[] => [
  ...BODIES[name].inputs,
  ...(v.documents && BODIES[name].over !== null ? ['spans'] : []),
  ...(v.drop ? ['keys'] : []),
];

/** One workgroup per ROWS rows of each [T, D] matrix, spread over x and y. */
function attentionProgram(name: BodyName, r: number, t: number, d: number, v: Variant) {
  const b: Body = BODIES[name];
  const g = new Gen(d, v.drop);
  const tk = attentionTileRows(b, d);
  const groups = r * Math.ceil(t / ROWS);
  const vector = new Set([...b.own, ...b.tile]);
  const variableNames = inputNames(name, v);
  const documents = variableNames.includes('spans');
  const variant = `${v.drop ? '_drop' : ''}${v.cap ? '_cap' : ''}${documents ? '_docs' : ''}`;
  return {
    variableNames,
    variableComponents: variableNames.map((x) => (vector.has(x) ? g.w : 1)),
    outputShape: [r * t, b.rowwise ? 1 : d], // two dims: tfjs's x/y dispatch layout
    shaderKey: `lorafleet_attn_${name}_d${d}_w${g.w}_tk${tk}${variant}`,
    dispatchLayout: { x: [0], y: [1] },
    dispatch: [Math.min(groups, MAX_GROUPS), Math.ceil(groups / MAX_GROUPS), 1],
    workgroupSize: [ROWS, 1, 1],
    uniforms: `rows : i32, seq : i32, scale : f32, window : i32, softcap : f32, perItem : i32,${v.drop ? ' threshold : i32, dropScale : f32,' : ''}`,
    getUserCode: () => userCode(b, g, tk, v.cap, documents),
  };
}

/** The kernels' attributes: q k^T's scale, and the probabilities' dropout rate (0: none). */
export interface AttnAttrs {
  scale: number;
  dropRate?: number;
  /** A sliding window: query i sees keys i - window + 1 .. i (absent or 0: all of them). */
  window?: number;
  /** Soft-capping of the scores, cap tanh(s / cap) (absent or 0: none). */
  softcap?: number;
}

/**
 * The inputs of `name` checked: float32 [R, T, D] or [R, T], the spans int32
 * [N, 2] (N divides R T) and the dropout keys int32 [2].
 */
function checkedInputs(args: WebGpuKernelArgs, name: BodyName, v: Variant): Info[] {
  const names = inputNames(name, v);
  const inputs = names.map((n) => args.inputs[n] as Info | undefined);
  const [R, T, D] = inputs[0]!.shape as [number, number, number];
  const N = (args.inputs.spans as Info | undefined)?.shape[0] ?? T;
  const want: Record<string, number[]> = { keys: [2], lse: [R, T], delta: [R, T], spans: [N, 2] };
  for (const [i, x] of inputs.entries()) {
    const n = names[i]!;
    const shape = want[n] ?? [R, T, D];
    const dtype = n === 'keys' || n === 'spans' ? 'int32' : 'float32';
    if (!x || x.dtype !== dtype || x.shape.join() !== shape.join())
      throw new Error(
        `${ATTN_STATS} (${name}): ${n} must be ${dtype} [${shape}], got ${x ? `${x.dtype} [${x.shape}]` : 'nothing'}`,
      );
  }
  if (v.documents && (N % T !== 0 || (R * T) % N !== 0))
    throw new Error(
      `${ATTN_STATS} (${name}): spans [${N}, 2] must cover whole rows of ${T} tokens, each item's heads of the ${R} [T, D] matrices`,
    );
  return inputs as Info[];
}

function run(args: WebGpuKernelArgs, name: BodyName): Info {
  const {
    scale = 1,
    dropRate = 0,
    window = 0,
    softcap = 0,
  } = (args.attrs ?? {}) as Partial<AttnAttrs>;
  const v: Variant = {
    drop: dropRate > 0 && BODIES[name].dropped,
    cap: softcap > 0,
    documents: args.inputs.spans !== undefined,
  };
  const inputs = checkedInputs(args, name, v);
  const [R, T, D] = inputs[0]!.shape as [number, number, number];
  const N = (args.inputs.spans as Info | undefined)?.shape[0] ?? T;
  const uniforms: { type: 'int32' | 'float32'; data: number[] }[] = [
    { type: 'int32', data: [R * T] },
    { type: 'int32', data: [T] },
    { type: 'float32', data: [scale] },
    { type: 'int32', data: [window > 0 ? Math.min(window, T) : T] },
    { type: 'float32', data: [softcap > 0 ? softcap : 0] },
    { type: 'int32', data: [(R * T) / N] }, // heads per batch item
  ];
  if (v.drop) {
    const { threshold, scale: dropScale } = dropoutKeys(0, dropRate); // neither depends on the seed
    uniforms.push({ type: 'int32', data: [threshold | 0] }, { type: 'float32', data: [dropScale] });
  }
  const runner = args.backend as unknown as WebGpuProgramRunner;
  const program = attentionProgram(name, R, T, D, v);
  const out = runner.runWebGPUProgram(program, inputs, 'float32', uniforms);
  return { ...out, shape: BODIES[name].rowwise ? [R, T] : [R, T, D] }; // the same data
}

/** Registers the four kernels for 'webgpu' (once). */
export function registerWebGpuAttention(api: Pick<typeof tf, 'registerKernel' | 'getKernel'>) {
  const wrt = (args: WebGpuKernelArgs) => (args.attrs as { wrt: AttnGradWrt }).wrt;
  registerWebGpuKernels(api, [
    [ATTN_STATS, (args) => run(args, 'stats')],
    [ATTN_OUT, (args) => run(args, 'out')],
    [ATTN_DELTA, (args) => run(args, 'delta')],
    [ATTN_GRAD, (args) => run(args, wrt(args))],
  ]);
}

let enabled = true;

/** Turns fused attention off on webgpu (tests compare it with tfjs's path), or on again. */
export function useFusedAttention(on: boolean): void {
  enabled = on;
}

/** True on webgpu with the project's kernels (not LORAFLEET_WEBGPU_KERNELS=stock). */
export function fusedAttentionAvailable(): boolean {
  return enabled && tf.getBackend() === 'webgpu' && webGpuMatMulChoice() === 'project';
}
