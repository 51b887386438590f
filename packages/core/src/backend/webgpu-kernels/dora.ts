// DoRA's pieces of a hand-scheduled step (lora/dora.ts is the math; the
// models' scheduled-linear.ts records these around the fused LoRA linear),
// as tfjs-shaped WebGPU programs like plumbing.ts's. g = m / n per output
// column, m the trained magnitude [C], n = ||W + s B A|| per output [C]:
//   doraNorms          n [C] from W and D = s B A, both [C, K] (rows: a
//                      workgroup per row, tree-reduced) or [K, C] (columns,
//                      GPT-2's Conv1D: an invocation per column)
//   doraScale          x [N, C] (g + offset) (+ bias), one per element
//   doraMix            base + (g - 1) dropped + g lora, one per element
//   doraMagnitudeGrad  dm [C] = sum over rows of dy (z (+ z2)) / n, an
//                      invocation per column
import { MAX_GROUPS, THREADS, f32, flat, int } from './plumbing.js';

/** The dispatch of `groups` workgroups, over y when there are more than 65,535. */
const groupsOf = (groups: number) => [
  Math.min(groups, MAX_GROUPS),
  Math.ceil(groups / MAX_GROUPS),
  1,
];
const GROUP_INDEX = `(i32(workgroupId.x) + i32(workgroupId.y) * ${MAX_GROUPS})`;

/** One invocation per element i of [rows, cols], with its column's g = m / n. */
function elementwise(
  key: string,
  vars: string[],
  rows: number,
  cols: number,
  uniforms: string,
  body: string,
) {
  return flat({
    key: `dora_${key}`,
    vars,
    shape: [rows, cols],
    uniforms: `cols : i32, ${uniforms}`,
    body: `
      let col = i % uniforms.cols;
      let g = m[col] / n[col];
      ${body}`,
  });
}

/** result[j] (output [C, 1]) from a loop over the rows of column j, one invocation per column. */
function perColumn(key: string, vars: string[], cols: number, loop: string, finish: string) {
  return {
    variableNames: vars,
    outputShape: [cols, 1],
    shaderKey: `lorafleet_dora_${key}`,
    dispatchLayout: { x: [0], y: [1] },
    dispatch: groupsOf(Math.ceil(cols / THREADS)),
    workgroupSize: [THREADS, 1, 1],
    uniforms: 'rows : i32, cols : i32,',
    getUserCode: () => `
    fn main() {
      let j = ${GROUP_INDEX} * ${THREADS} + i32(localIndex);
      if (j >= uniforms.cols) { return; }
      var acc = 0.0;
      for (var r = 0; r < uniforms.rows; r++) {
        let at = r * uniforms.cols + j;
        ${loop}
      }
      result[j] = ${finish};
    }`,
  };
}

/**
 * n [C] (output [C, 1]) = the norm of each output's weights in W + D: rows of
 * [C, K] when `columns` is false, columns of [K, C] when true.
 */
export function doraNormsProgram(c: number, k: number, columns: boolean) {
  if (columns) {
    const loop = 'let v = w[at] + d[at];\n        acc += v * v;';
    return {
      program: perColumn('norms_columns', ['w', 'd'], c, loop, 'sqrt(acc)'),
      uniforms: [int(k), int(c)],
    };
  }
  return {
    program: {
      variableNames: ['w', 'd'],
      outputShape: [c, 1],
      shaderKey: 'lorafleet_dora_norms_rows',
      dispatchLayout: { x: [0], y: [1] },
      dispatch: groupsOf(c),
      workgroupSize: [THREADS, 1, 1],
      uniforms: 'c : i32, k : i32,',
      getUserCode: () => `
    var<workgroup> red : array<f32, ${THREADS}>;
    fn main() {
      let row = ${GROUP_INDEX};
      let i = localIndex;
      var acc = 0.0;
      if (row < uniforms.c) {
        for (var r = i32(i); r < uniforms.k; r += ${THREADS}) {
          let v = w[row * uniforms.k + r] + d[row * uniforms.k + r];
          acc += v * v;
        }
      }
      red[i] = acc;
      workgroupBarrier();
      for (var s = ${THREADS / 2}u; s > 0u; s = s >> 1u) {
        if (i < s) { red[i] = red[i] + red[i + s]; }
        workgroupBarrier();
      }
      if (i == 0u && row < uniforms.c) { result[row] = sqrt(red[0]); }
    }`,
    },
    uniforms: [int(c), int(k)],
  };
}

/** x [N, C] (m / n + offset) per column (+ bias [C]). */
export function doraScaleProgram(rows: number, cols: number, offset: number, bias: boolean) {
  return {
    program: elementwise(
      bias ? 'scale_bias' : 'scale',
      bias ? ['x', 'm', 'n', 'bias'] : ['x', 'm', 'n'],
      rows,
      cols,
      'offset : f32,',
      `result[i] = x[i] * (g + uniforms.offset)${bias ? ' + bias[col]' : ''};`,
    ),
    uniforms: [int(rows * cols), int(cols), f32(offset)],
  };
}

/** base + (g - 1) dropped + g lora, all [N, C]: DoRA's output with LoRA dropout. */
export function doraMixProgram(rows: number, cols: number) {
  return {
    program: elementwise(
      'mix',
      ['base', 'dropped', 'lora', 'm', 'n'],
      rows,
      cols,
      '',
      'result[i] = base[i] + (g - 1.0) * dropped[i] + g * lora[i];',
    ),
    uniforms: [int(rows * cols), int(cols)],
  };
}

/** dm [C] (output [C, 1]) = sum over the N rows of dy (z (+ z2)), divided by n; all [N, C]. */
export function doraMagnitudeGradProgram(rows: number, cols: number, twoParts: boolean) {
  const z = twoParts ? '(z[at] + z2[at])' : 'z[at]';
  const vars = twoParts ? ['dy', 'z', 'z2', 'n'] : ['dy', 'z', 'n'];
  return {
    program: perColumn(
      `magnitude_grad_${twoParts ? 2 : 1}`,
      vars,
      cols,
      `acc += dy[at] * ${z};`,
      'acc / n[j]',
    ),
    uniforms: [int(rows), int(cols)],
  };
}
