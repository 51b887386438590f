// The data movement of a hand-scheduled step (webgpu-plan/, models'
// scheduled steps), as tfjs-shaped WebGPU programs: one invocation per output
// element unless said otherwise; outputs are 2-D ([count / last, last]),
// to be viewed in the shapes named here. Recorded into plans; nothing
// registers them as tfjs kernels.
//   embed       x [N, C] = wte[ids[n]] (+ wpe[n % T])
//   heads       [N, W] column block `part` -> [B*H, T, D]   (split heads, repeat kv)
//   mergeHeads  P tensors [B*H, T, D] -> [N, P*C]           (merge heads, sum kv groups)
//   rope        rotary position embedding of [R, T, D], and its transpose
//   add         a + b
//   scale       x times a constant (Granite's residual multiplier)
//   lossSum     [1] = the sum of column 0 of stats [n, 2]   (one workgroup)
//   accumulate  result += x                                 (in place)
//   softcapInPlace  x = cap tanh(x / cap)                  (in place: Gemma 2's logits)
//   xentGradInPlace  logits [n, V] -> d loss / d logits     (in place: the
//               logits are not needed after, and [n, V] is the step's largest;
//               soft-capped logits: times the cap's slope 1 - (logit / cap)^2)
//   dropout     x times the dropout mask of keys [2] (ops/dropout.ts), the keys
//               written at each replay (a micro-batch's seed)
import { xentGradValue } from './cross-entropy.js';
import { LOWBIAS32_WGSL } from './dropout.js';

export const THREADS = 64;
export const MAX_GROUPS = 65535;

/** One invocation per output element `i` (shape's elements, viewed as [count / last, last]). */
export function flat(o: {
  key: string;
  vars: string[];
  shape: number[];
  uniforms: string;
  body: string;
}) {
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

export const int = (v: number) => ({ type: 'int32' as const, data: [v] });
export const f32 = (v: number) => ({ type: 'float32' as const, data: [v] });

/**
 * x [N, C] = wte[ids[n]] scale (+ wpe[n % T]: GPT-2's learned positions 0..T-1 in
 * every row, when `positions`; scale: Gemma's sqrt(C), else 1).
 */
export function embedProgram(
  n: number,
  c: number,
  t: number,
  positions: boolean,
  scale = 1,
  packed = false,
  noise = false,
) {
  // The token's position: its place in the row, or packed documents' own (input `positions`).
  const at = packed ? 'positions[row]' : '(row % uniforms.seq)';
  const pos = positions ? ` + wpe[${at} * uniforms.cols + col]` : '';
  // NEFTune's noise (input `noise` [n, c]) on the token embedding, before its scale.
  const token = noise
    ? '(wte[ids[row] * uniforms.cols + col] + noise[i])'
    : 'wte[ids[row] * uniforms.cols + col]';
  const key = positions ? (packed ? 'embed_packed' : 'embed') : 'embed_no_positions';
  return {
    program: flat({
      key: `${key}${noise ? '_noise' : ''}`,
      vars: [
        ...['ids', 'wte', ...(positions ? ['wpe'] : []), ...(packed ? ['positions'] : [])],
        ...(noise ? ['noise'] : []),
      ],
      shape: [n, c],
      uniforms: 'cols : i32, seq : i32, scale : f32,',
      body: `
      let row = i / uniforms.cols;
      let col = i - row * uniforms.cols;
      result[i] = ${token} * uniforms.scale${pos};`,
    }),
    uniforms: [int(n * c), int(c), int(t), f32(scale)],
  };
}

/**
 * [B*H, T, D] from the columns first .. first + (H/G)*D of src [B*T, W]: head h reads
 * source head floor(h / G), so G = H / Hkv repeats grouped-query keys and
 * values (repeat_kv) as it splits them.
 */
export function headsProgram(
  b: number,
  h: number,
  t: number,
  d: number,
  width: number,
  first: number,
  group = 1,
) {
  return {
    program: flat({
      key: 'heads',
      vars: ['src'],
      shape: [b * h, t, d],
      uniforms: 'heads : i32, seq : i32, dim : i32, width : i32, first : i32, group : i32,',
      body: `
      let dd = i % uniforms.dim;
      let tt = (i / uniforms.dim) % uniforms.seq;
      let bh = i / (uniforms.dim * uniforms.seq);
      let hh = bh % uniforms.heads;
      let bb = bh / uniforms.heads;
      let src_col = uniforms.first + (hh / uniforms.group) * uniforms.dim + dd;
      result[i] = src[(bb * uniforms.seq + tt) * uniforms.width + src_col];`,
    }),
    uniforms: [int(b * h * t * d), int(h), int(t), int(d), int(width), int(first), int(group)],
  };
}

/**
 * [B*T, P*C] from P tensors [B*H*G, T, D] (P = 1: merge heads; 3: q, k, v
 * back into qkv), C = H*D. With G > 1 (P = 1) each output head is the sum of
 * its G source heads: the gradient of headsProgram's repetition.
 */
export function mergeHeadsProgram(
  b: number,
  h: number,
  t: number,
  d: number,
  parts: 1 | 3,
  group = 1,
) {
  if (parts === 3 && group !== 1) throw new Error('mergeHeads: a group sums one part only');
  const c = h * d;
  const names = parts === 1 ? ['p0'] : ['p0', 'p1', 'p2'];
  const pick = parts === 1 ? 'p0[j]' : 'select(select(p2[j], p1[j], part == 1), p0[j], part == 0)';
  return {
    program: flat({
      key: `merge_heads_${parts}`,
      vars: names,
      shape: [b * t, parts * c],
      uniforms: 'heads : i32, seq : i32, dim : i32, width : i32, group : i32,',
      body: `
      let n = i / (${parts} * uniforms.width);
      let col = i - n * ${parts} * uniforms.width;
      let part = col / uniforms.width;
      let cc = col - part * uniforms.width;
      let hh = cc / uniforms.dim;
      let dd = cc - hh * uniforms.dim;
      let bb = n / uniforms.seq;
      let tt = n - bb * uniforms.seq;
      var sum = 0.0;
      for (var g = 0; g < uniforms.group; g++) {
        let j = ((bb * uniforms.heads * uniforms.group + hh * uniforms.group + g) * uniforms.seq + tt) * uniforms.dim + dd;
        sum += ${pick};
      }
      result[i] = sum;`,
    }),
    uniforms: [int(b * t * parts * c), int(h), int(t), int(d), int(c), int(group)],
  };
}

/**
 * Rotary position embedding of x [R, T, D] with tables cos, sin [T, rot]
 * (rotate-half convention: y = x cos + rotate_half(x) sin, rotate_half(x) =
 * cat(-x2, x1)) over each row's first `rot` dims (the rest pass: Phi-3's
 * partial rotation), or its transpose for the gradient (`backward`):
 * dx = dy cos + rotate_half^T(dy sin), rotate_half^T(u) = cat(u2, -u1).
 * `interleaved` (GLM): the pairs are adjacent, (x0, x1), (x2, x3), ...,
 * rotate_half(x) = (-x1, x0, -x3, x2, ...).
 * `perItem` > 0: packed documents, the tables' row of x's row t in matrix r
 * is positions[(r / perItem) T + t] (input `positions` [R T / perItem]), not t.
 */
export function ropeProgram(
  r: number,
  t: number,
  d: number,
  backward: boolean,
  rot = d,
  interleaved = false,
  perItem = 0,
) {
  // Each element's partner is h further on in the first of a pair, h back in the second.
  const h = interleaved ? 1 : rot / 2;
  const first = interleaved ? 'dd % 2 == 0' : `dd < ${h}`;
  // rotate_half(x) sin at element dd, or for the gradient rotate_half^T(dy sin).
  const rotated = backward
    ? `if (${first}) { rot = x[i + ${h}] * sin[row + ${h}]; } else { rot = -x[i - ${h}] * sin[row - ${h}]; }`
    : `if (${first}) { rot = -x[i + ${h}] * sin[row]; } else { rot = x[i - ${h}] * sin[row]; }`;
  const packed = perItem > 0;
  const position = packed
    ? 'positions[(i / (uniforms.dim * uniforms.seq * uniforms.perItem)) * uniforms.seq + tt]'
    : 'tt';
  return {
    program: flat({
      key: `${backward ? 'rope_grad' : 'rope'}_${interleaved ? 'pairs' : h}${packed ? '_packed' : ''}`, // h is in the WGSL
      vars: packed ? ['x', 'cos', 'sin', 'positions'] : ['x', 'cos', 'sin'],
      shape: [r, t, d],
      uniforms: 'seq : i32, dim : i32, rotary : i32, perItem : i32,',
      body: `
      let dd = i % uniforms.dim;
      if (dd >= uniforms.rotary) { result[i] = x[i]; return; }
      let tt = (i / uniforms.dim) % uniforms.seq;
      let row = ${position} * uniforms.rotary + dd;
      var rot = 0.0;
      ${rotated}
      result[i] = x[i] * cos[row] + rot;`,
    }),
    uniforms: [int(r * t * d), int(t), int(d), int(rot), int(Math.max(perItem, 1))],
  };
}

/** Columns first .. first + width of src [N, W], as [N, width]. */
export function columnsProgram(n: number, w: number, first: number, width: number) {
  return {
    program: flat({
      key: 'columns',
      vars: ['src'],
      shape: [n, width],
      uniforms: 'src_width : i32, first : i32, width : i32,',
      body: `
      let row = i / uniforms.width;
      result[i] = src[row * uniforms.src_width + uniforms.first + i - row * uniforms.width];`,
    }),
    uniforms: [int(n * width), int(w), int(first), int(width)],
  };
}

/** [N, a + b (+ c)] from column blocks [N, a], [N, b] (and [N, c]) side by side. */
export function joinColumnsProgram(n: number, widths: number[]) {
  const [a, b, c] = [widths[0]!, widths[1]!, widths[2] ?? 0];
  const three = widths.length === 3;
  const third = three
    ? 'else { result[i] = p2[row * uniforms.c + col - uniforms.a - uniforms.b]; }'
    : '';
  return {
    program: flat({
      key: `join_columns_${widths.length}`,
      vars: three ? ['p0', 'p1', 'p2'] : ['p0', 'p1'],
      shape: [n, a + b + c],
      uniforms: 'a : i32, b : i32, c : i32,',
      body: `
      let w = uniforms.a + uniforms.b + uniforms.c;
      let row = i / w;
      let col = i - row * w;
      if (col < uniforms.a) { result[i] = p0[row * uniforms.a + col]; }
      else if (col < uniforms.a + uniforms.b) { result[i] = p1[row * uniforms.b + col - uniforms.a]; }
      ${third}`,
    }),
    uniforms: [int(n * (a + b + c)), int(a), int(b), int(c)],
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

/** x [count] times `factor`. */
export function scaleProgram(count: number, factor: number) {
  return {
    program: flat({
      key: 'scale',
      vars: ['x'],
      shape: [count],
      uniforms: 'factor : f32,',
      body: 'result[i] = x[i] * uniforms.factor;',
    }),
    uniforms: [int(count), f32(factor)],
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

/**
 * [3]: sums over rows of the cross-entropy's nll (stats[row * 2]) and of
 * TRL's token metrics (tokens[row * 2], tokens[row * 2 + 1]: hits and
 * entropy), one workgroup.
 */
export function lossSumsProgram(rows: number) {
  const threads = 256;
  const reduce = (out: number) => `
      red[i] = acc;
      workgroupBarrier();
      for (var s = ${threads / 2}u; s > 0u; s = s >> 1u) {
        if (i < s) { red[i] = red[i] + red[i + s]; }
        workgroupBarrier();
      }
      if (i == 0u) { result[${out}] = red[0]; }
      workgroupBarrier();`;
  const column = (input: string, offset: number) => `
      acc = 0.0;
      for (var r = i32(i); r < uniforms.rows; r += ${threads}) { acc += ${input}[r * 2 + ${offset}]; }`;
  return {
    program: {
      variableNames: ['stats', 'tokens'],
      outputShape: [1, 3],
      shaderKey: 'lorafleet_plumbing_loss_sums',
      dispatchLayout: { x: [0], y: [1] },
      dispatch: [1, 1, 1],
      workgroupSize: [threads, 1, 1],
      uniforms: 'rows : i32,',
      getUserCode: () => `
    var<workgroup> red : array<f32, ${threads}>;
    fn main() {
      let i = localIndex;
      var acc = 0.0;
      ${column('stats', 0)}${reduce(0)}
      ${column('tokens', 0)}${reduce(1)}
      ${column('tokens', 1)}${reduce(2)}
    }`,
    },
    uniforms: [int(rows)],
  };
}

/**
 * The cross-entropy's gradient written over the logits [n, stride] (bound as
 * the output), of which each row's first `vocab` columns are logits; the
 * padding columns are set to 0 (a product reading the rows as vec4 sees 0).
 */
export function xentGradInPlaceProgram(n: number, vocab: number, stride = vocab, softcap = 0) {
  return {
    program: flat({
      key: 'xent_grad_in_place',
      vars: ['stats', 'labels', 'dy'],
      shape: [n, stride],
      uniforms: 'vocab : i32, stride : i32, softcap : f32,',
      body: `let r = i / uniforms.stride;
      let col = i - r * uniforms.stride;
      let index = r * uniforms.vocab + col; // as if unpadded
      var out = 0.0;
      if (col < uniforms.vocab) {${xentGradValue('result[i]')}
        if (uniforms.softcap > 0.0) {
          let t = result[i] / uniforms.softcap; // the logit is capped: d capped / d raw = 1 - t^2
          g = g * (1.0 - t * t);
        }
        out = g;
      }
      result[i] = out;`,
    }),
    uniforms: [int(n * stride), int(vocab), int(stride), f32(softcap)],
  };
}

/**
 * x [count] = cap tanh(x / cap), in place (x is bound as the output, no
 * input). tanh's argument is clamped to +-15, where it is 1 in f32 (some
 * drivers' tanh is NaN past exp's range).
 */
export function softcapInPlaceProgram(count: number, cap: number) {
  return {
    program: flat({
      key: 'softcap_in_place',
      vars: [],
      shape: [count],
      uniforms: 'cap : f32,',
      body: 'result[i] = uniforms.cap * tanh(clamp(result[i] / uniforms.cap, -15.0, 15.0));',
    }),
    uniforms: [int(count), f32(cap)],
  };
}

/**
 * x [count] times dropout's mask (ops/dropout.ts) of the keys in `keys` [2]
 * (int32 bits of k1, k2: an input the host writes per replay), with the
 * rate's u32 threshold and f32 scale fixed.
 */
export function dropoutProgram(count: number, threshold: number, scale: number) {
  const program = flat({
    key: 'dropout',
    vars: ['x', 'keys'],
    shape: [count],
    uniforms: 'threshold : i32, scale : f32,',
    body: `
      let h = lowbias32(lowbias32(u32(i) ^ bitcast<u32>(keys[0])) ^ bitcast<u32>(keys[1]));
      result[i] = x[i] * select(0.0, uniforms.scale, h >= bitcast<u32>(uniforms.threshold));`,
  });
  return {
    program: { ...program, getUserCode: () => LOWBIAS32_WGSL + program.getUserCode() },
    uniforms: [int(count), int(threshold | 0), { type: 'float32' as const, data: [scale] }],
  };
}
