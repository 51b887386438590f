// Causal self-attention without the [T, T] matrices (flash-attention style:
// scores are recomputed, never stored), forward and backward, on 'webgpu'.
// q, k, v, o: [R, T, D] with R = batch x heads; s_ij = scale q_i . k_j for
// j <= i, p_ij = exp(s_ij - lse_i). One invocation per row of R x T (a query
// row, or a key row for dK and dV), looping over the keys (queries) its row
// meets, so memory is O(R T D) and no intermediate grows with T^2:
//   LoraFleetAttnStats   q, k          -> lse [R, T]  (online max and sum of exp)
//   LoraFleetAttnOut     q, k, v, lse  -> o [R, T, D] = sum_j p_ij v_j
//   LoraFleetAttnDelta   o, dy         -> delta [R, T] = dy_i . o_i
//   LoraFleetAttnGrad    q, k, v, dy, lse, delta -> dq, dk or dv (attr `wrt`):
//     ds_ij = p_ij (dy_i . v_j - delta_i)
//     dq_i = scale sum_{j<=i} ds_ij k_j,  dk_j = scale sum_{i>=j} ds_ij q_i,
//     dv_j = sum_{i>=j} p_ij dy_i
// The loops read k, v (or q, dy) from global memory, no workgroup tiling yet:
// correct first, and the kernel to tune once a GPU measures it.
import { tf } from '../tf.js';
import { webGpuMatMulChoice } from './matmul-kernel.js';
import { registerWebGpuKernels, type WebGpuKernelArgs, type WebGpuProgramRunner } from './rows.js';

export const ATTN_STATS = 'LoraFleetAttnStats';
export const ATTN_OUT = 'LoraFleetAttnOut';
export const ATTN_DELTA = 'LoraFleetAttnDelta';
export const ATTN_GRAD = 'LoraFleetAttnGrad';

export type AttnGradWrt = 'q' | 'k' | 'v';
type Info = tf.TensorInfo;

const THREADS = 64;
const MAX_GROUPS = 65535;

/** One invocation per row of [R, T]; `body` sees row, t (its position), head (row - t), D. */
function rowsProgram(o: {
  key: string;
  variableNames: string[];
  outputShape: number[];
  rows: number;
  d: number;
  body: string;
}) {
  const groups = Math.ceil(o.rows / THREADS);
  const helpers = o.variableNames.length > 1 ? dotHelpers(o.variableNames, o.d) : '';
  return {
    variableNames: o.variableNames,
    outputShape: o.outputShape,
    shaderKey: `lorafleet_attn_${o.key}_${o.d}`,
    dispatchLayout: { x: [0], y: [1] },
    dispatch: [Math.min(groups, MAX_GROUPS), Math.ceil(groups / MAX_GROUPS), 1],
    workgroupSize: [THREADS, 1, 1],
    uniforms: 'rows : i32, seq : i32, scale : f32,',
    getUserCode: () => `
    ${helpers}
    fn main() {
      let row = (i32(workgroupId.x) + i32(workgroupId.y) * ${MAX_GROUPS}) * ${THREADS} + i32(localIndex);
      if (row >= uniforms.rows) { return; }
      let t = row % uniforms.seq;
      let head = row - t;
      const D = ${o.d};
      ${o.body}
    }`,
  };
}

/** dot<D>_a_b(i, j): row i of a . row j of b (flat offsets), for each pair of inputs the bodies use. */
function dotHelpers(names: string[], d: number): string {
  const pairs = [
    ['q', 'k'],
    ['dy', 'v'],
    ['dy', 'o'],
  ].filter(([a, b]) => names.includes(a!) && names.includes(b!));
  return pairs
    .map(
      ([a, b]) => `
    fn dot${d}_${a}_${b}(i : i32, j : i32) -> f32 {
      var s = 0.0;
      for (var c = 0; c < ${d}; c++) { s += ${a}[i + c] * ${b}[j + c]; }
      return s;
    }`,
    )
    .join('');
}

const qk = (i: string, j: string, d: number) => `dot${d}_q_k(${i}, ${j})`;
const dyv = (i: string, j: string, d: number) => `dot${d}_dy_v(${i}, ${j})`;

/**
 * acc [D] = sum of w * from[other row] over the keys j <= t a query row meets
 * (`over: 'keys'`) or the queries i >= t that meet a key row (`'queries'`),
 * with p = exp(scale q . k - lse of the query) and w the WGSL `weight` of p;
 * written times scale when `scaled`.
 */
function accumulate(
  d: number,
  o: { over: 'keys' | 'queries'; weight: string; from: string; scaled: boolean },
): string {
  const keys = o.over === 'keys';
  const other = keys ? '(head + j)' : 'qi';
  const loop = keys
    ? 'for (var j = 0; j <= t; j++) {'
    : 'for (var i = t; i < uniforms.seq; i++) {\n        let qi = head + i;';
  const s = keys ? qk('row * D', `${other} * D`, d) : qk('qi * D', 'row * D', d);
  return `
      var acc : array<f32, ${d}>;
      ${loop}
        let p = exp(uniforms.scale * ${s} - lse[${keys ? 'row' : 'qi'}]);
        let w = ${o.weight};
        for (var c = 0; c < D; c++) { acc[c] += w * ${o.from}[${other} * D + c]; }
      }
      for (var c = 0; c < D; c++) { setOutputAtIndex(row * D + c, ${o.scaled ? 'uniforms.scale * ' : ''}acc[c]); }`;
}

/** The WGSL body of each program, by D. */
const BODIES = {
  stats: (d: number) => `
      var m = -3.0e38;
      var l = 0.0;
      for (var j = 0; j <= t; j++) {
        let s = uniforms.scale * ${qk('row * D', '(head + j) * D', d)};
        let mNew = max(m, s);
        l = l * exp(m - mNew) + exp(s - mNew);
        m = mNew;
      }
      setOutputAtIndex(row, m + log(l));`,
  out: (d: number) => accumulate(d, { over: 'keys', weight: 'p', from: 'v', scaled: false }),
  delta: (d: number) => `
      setOutputAtIndex(row, dot${d}_dy_o(row * D, row * D));`,
  q: (d: number) =>
    accumulate(d, {
      over: 'keys',
      weight: `p * (${dyv('row * D', '(head + j) * D', d)} - delta[row])`,
      from: 'k',
      scaled: true,
    }),
  k: (d: number) =>
    accumulate(d, {
      over: 'queries',
      weight: `p * (${dyv('qi * D', 'row * D', d)} - delta[qi])`,
      from: 'q',
      scaled: true,
    }),
  v: (d: number) => accumulate(d, { over: 'queries', weight: 'p', from: 'dy', scaled: false }),
} as const;
type BodyName = keyof typeof BODIES;

/** Inputs and output of each program: the output has D columns unless `rowwise`. */
const SPECS: Record<BodyName, { inputs: string[]; rowwise: boolean }> = {
  stats: { inputs: ['q', 'k'], rowwise: true },
  out: { inputs: ['q', 'k', 'v', 'lse'], rowwise: false },
  delta: { inputs: ['dy', 'o'], rowwise: true },
  q: { inputs: ['q', 'k', 'v', 'dy', 'lse', 'delta'], rowwise: false },
  k: { inputs: ['q', 'k', 'v', 'dy', 'lse', 'delta'], rowwise: false },
  v: { inputs: ['q', 'k', 'dy', 'lse'], rowwise: false }, // dv needs no v
};

function run(args: WebGpuKernelArgs, name: BodyName): Info {
  const { inputs: names, rowwise } = SPECS[name];
  const inputs = names.map((n) => args.inputs[n] as Info | undefined);
  const first = inputs[0]!;
  const [R, T, D] = first.shape as [number, number, number];
  for (const [i, x] of inputs.entries()) {
    const want = names[i] === 'lse' || names[i] === 'delta' ? [R, T] : [R, T, D];
    if (!x || x.dtype !== 'float32' || x.shape.join() !== want.join())
      throw new Error(
        `${ATTN_STATS} (${name}): ${names[i]} must be float32 [${want}], got ${x ? `${x.dtype} [${x.shape}]` : 'nothing'}`,
      );
  }
  const scale = (args.attrs as { scale?: number } | undefined)?.scale ?? 1;
  const program = rowsProgram({
    key: name,
    variableNames: names,
    outputShape: [R * T, rowwise ? 1 : D], // two dims: tfjs's x/y dispatch layout
    rows: R * T,
    d: D,
    body: BODIES[name](D),
  });
  const runner = args.backend as unknown as WebGpuProgramRunner;
  const out = runner.runWebGPUProgram(program, inputs as Info[], 'float32', [
    { type: 'int32', data: [R * T] },
    { type: 'int32', data: [T] },
    { type: 'float32', data: [scale] },
  ]);
  return { ...out, shape: rowwise ? [R, T] : [R, T, D] }; // the same data
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
