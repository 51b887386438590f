// The data movement of a hand-scheduled step (webgpu-plan/, models'
// scheduled steps), as tfjs-shaped WebGPU programs: one invocation per output
// element unless said otherwise; outputs are 2-D ([count / last, last]),
// to be viewed in the shapes named here. Recorded into plans; nothing
// registers them as tfjs kernels.
//   embed       x [N, C] = wte[ids[n]] + wpe[n % T]
//   heads       [N, W] column block `part` -> [B*H, T, D]   (split heads)
//   mergeHeads  P tensors [B*H, T, D] -> [N, P*C]           (merge heads)
//   add         a + b
//   lossSum     [1] = the sum of column 0 of stats [n, 2]   (one workgroup)
//   accumulate  result += x                                 (in place)
//   xentGradInPlace  logits [n, V] -> d loss / d logits     (in place: the
//               logits are not needed after, and [n, V] is the step's largest)
import { xentGradValue } from './cross-entropy.js';

const THREADS = 64;
const MAX_GROUPS = 65535;

function flat(o: { key: string; vars: string[]; shape: number[]; uniforms: string; body: string }) {
  const count = o.shape.reduce((a, b) => a * b, 1);
  const groups = Math.ceil(count / THREADS);
  // Two dims, as tfjs's x/y dispatch layout wants; the caller views the output as o.shape.
  const last = o.shape.length > 1 ? o.shape[o.shape.length - 1]! : 1;
  return {
    variableNames: o.vars,
    outputShape: [count / last, last],
    shaderKey: `lorafleet_plumbing_${o.key}`,
    dispatchLayout: { x: [0], y: [1] },
    dispatch: [Math.min(groups, MAX_GROUPS), Math.ceil(groups / MAX_GROUPS), 1],
    workgroupSize: [THREADS, 1, 1],
    uniforms: `count : i32, ${o.uniforms}`,
    getUserCode: () => `
    fn main() {
      let i = (i32(workgroupId.x) + i32(workgroupId.y) * ${MAX_GROUPS}) * ${THREADS} + i32(localIndex);
      if (i >= uniforms.count) { return; }
      ${o.body}
    }`,
  };
}

const int = (v: number) => ({ type: 'int32' as const, data: [v] });

/** x [N, C] = wte[ids[n]] + wpe[n % T] (GPT-2's learned positions 0..T-1 in every row). */
export function embedProgram(n: number, c: number, t: number) {
  return {
    program: flat({
      key: 'embed',
      vars: ['ids', 'wte', 'wpe'],
      shape: [n, c],
      uniforms: 'cols : i32, seq : i32,',
      body: `
      let row = i / uniforms.cols;
      let col = i - row * uniforms.cols;
      result[i] = wte[ids[row] * uniforms.cols + col] + wpe[(row % uniforms.seq) * uniforms.cols + col];`,
    }),
    uniforms: [int(n * c), int(c), int(t)],
  };
}

/** [B*H, T, D] from the columns part*C .. part*C + C of src [B*T, W] (C = H*D). */
export function headsProgram(
  b: number,
  h: number,
  t: number,
  d: number,
  width: number,
  part: number,
) {
  return {
    program: flat({
      key: 'heads',
      vars: ['src'],
      shape: [b * h, t, d],
      uniforms: 'heads : i32, seq : i32, dim : i32, width : i32, first : i32,',
      body: `
      let dd = i % uniforms.dim;
      let tt = (i / uniforms.dim) % uniforms.seq;
      let bh = i / (uniforms.dim * uniforms.seq);
      let hh = bh % uniforms.heads;
      let bb = bh / uniforms.heads;
      result[i] = src[(bb * uniforms.seq + tt) * uniforms.width + uniforms.first + hh * uniforms.dim + dd];`,
    }),
    uniforms: [int(b * h * t * d), int(h), int(t), int(d), int(width), int(part * h * d)],
  };
}

/** [B*T, P*C] from P tensors [B*H, T, D] (P = 1: merge heads; 3: q, k, v back into qkv). */
export function mergeHeadsProgram(b: number, h: number, t: number, d: number, parts: 1 | 3) {
  const c = h * d;
  const names = parts === 1 ? ['p0'] : ['p0', 'p1', 'p2'];
  const pick = parts === 1 ? 'p0[j]' : 'select(select(p2[j], p1[j], part == 1), p0[j], part == 0)';
  return {
    program: flat({
      key: `merge_heads_${parts}`,
      vars: names,
      shape: [b * t, parts * c],
      uniforms: 'heads : i32, seq : i32, dim : i32, width : i32,',
      body: `
      let n = i / (${parts} * uniforms.width);
      let col = i - n * ${parts} * uniforms.width;
      let part = col / uniforms.width;
      let cc = col - part * uniforms.width;
      let hh = cc / uniforms.dim;
      let dd = cc - hh * uniforms.dim;
      let bb = n / uniforms.seq;
      let tt = n - bb * uniforms.seq;
      let j = ((bb * uniforms.heads + hh) * uniforms.seq + tt) * uniforms.dim + dd;
      result[i] = ${pick};`,
    }),
    uniforms: [int(b * t * parts * c), int(h), int(t), int(d), int(c)],
  };
}

/** a + b, same shape. */
export function addProgram(shape: number[]) {
  return {
    program: flat({
      key: 'add',
      vars: ['a', 'b'],
      shape,
      uniforms: '',
      body: 'result[i] = a[i] + b[i];',
    }),
    uniforms: [int(shape.reduce((x, y) => x * y, 1))],
  };
}

/** result += x, in place (result is the accumulator, bound as the output). */
export function accumulateProgram(length: number) {
  return {
    program: flat({
      key: 'accumulate',
      vars: ['x'],
      shape: [length],
      uniforms: '',
      body: 'result[i] = result[i] + x[i];',
    }),
    uniforms: [int(length)],
  };
}

/** [1]: the sum over rows of stats[row * 2] (the cross-entropy's nll column), one workgroup. */
export function lossSumProgram(rows: number) {
  const threads = 256;
  return {
    program: {
      variableNames: ['stats'],
      outputShape: [1, 1],
      shaderKey: 'lorafleet_plumbing_loss_sum',
      dispatchLayout: { x: [0], y: [1] },
      dispatch: [1, 1, 1],
      workgroupSize: [threads, 1, 1],
      uniforms: 'rows : i32,',
      getUserCode: () => `
    var<workgroup> red : array<f32, ${threads}>;
    fn main() {
      let i = localIndex;
      var acc = 0.0;
      for (var r = i32(i); r < uniforms.rows; r += ${threads}) { acc += stats[r * 2]; }
      red[i] = acc;
      workgroupBarrier();
      for (var s = ${threads / 2}u; s > 0u; s = s >> 1u) {
        if (i < s) { red[i] = red[i] + red[i + s]; }
        workgroupBarrier();
      }
      if (i == 0u) { result[0] = red[0]; }
    }`,
    },
    uniforms: [int(rows)],
  };
}

/** The cross-entropy's gradient written over the logits [n, V] (bound as the output). */
export function xentGradInPlaceProgram(n: number, vocab: number) {
  return {
    program: flat({
      key: 'xent_grad_in_place',
      vars: ['stats', 'labels', 'dy'],
      shape: [n, vocab],
      uniforms: 'vocab : i32,',
      body: `let index = i;${xentGradValue('result[index]')}
      result[index] = g;`,
    }),
    uniforms: [int(n * vocab), int(vocab)],
  };
}
