// Softmax cross-entropy over the vocabulary, fused, on 'webgpu':
//   LoraFleetXent      logits [n, V], labels int32 [n] -> [n, 2]: (nll, logsumexp) per row
//                      (attr `vocab`: the first `vocab` columns of wider, padded rows)
//   LoraFleetXentGrad  logits, stats [n, 2], labels, dy [n] -> dlogits [n, V]
//                      = dy[row] (exp(logit - lse[row]) - onehot(label))
//   LoraFleetTokenStats logits [n, V], labels [n] -> [n, 2]: (hit, entropy) per row, TRL's
//                      token metrics (ops/token-stats.ts; attr `vocab` as LoraFleetXent's)
// A label < 0 (IGNORE_INDEX, -100) contributes no loss and no gradient. The
// forward keeps only lse per row: no [n, V] probabilities exist until the
// backward writes the gradient, once (tfjs's logSoftmax + gather keeps the
// [n, V] log-probabilities for its backward, then builds the gradient from
// several [n, V] temporaries).
import { TOKEN_STATS } from '../token-stats.js';
import type { tf } from '../tf.js';
import {
  ROW_THREADS,
  rowProgram,
  workgroupReduce,
  registerWebGpuKernels,
  type FlatDispatchUtil,
  type WebGpuKernelArgs,
  type WebGpuProgramRunner,
  elementwiseProgram,
} from './rows.js';

export type { FlatDispatchUtil } from './rows.js';

export const LORAFLEET_XENT = 'LoraFleetXent';
export const LORAFLEET_XENT_GRAD = 'LoraFleetXentGrad';

type Info = tf.TensorInfo;

/** WGSL: the row's largest logit, as `maxAll` (every program here starts with it). */
const ROW_MAX = `
      acc = -3.402823e38;
      for (var v = i32(i); v < uniforms.vocab; v += ${ROW_THREADS}) {
        if (live) { acc = max(acc, logits[base + v]); }
      }
      ${workgroupReduce('maxAll', 'max')}`;

/** A program of [rows, 2] out of logits [rows, W] (the first `vocab` columns) and labels. */
function perRowProgram(shaderKey: string, rows: number, body: string) {
  return rowProgram({
    shaderKey,
    variableNames: ['logits', 'labels'],
    outputShape: [rows, 2],
    rows,
    uniforms: 'rows : i32, vocab : i32, stride : i32,',
    lengthUniform: 'vocab',
    strideUniform: 'stride',
    body,
  });
}

/** max, then the sum of exp(logit - max), across the row: lse = max + log(sum). */
function forwardProgram(rows: number) {
  const body = `${ROW_MAX}
      acc = 0.0;
      for (var v = i32(i); v < uniforms.vocab; v += ${ROW_THREADS}) {
        if (live) { acc += exp(logits[base + v] - maxAll); }
      }
      ${workgroupReduce('sumAll', 'sum')}
      if (i == 0u && live) {
        let lse = maxAll + log(sumAll);
        let label = labels[row];
        var nll = 0.0;
        if (label >= 0) { nll = lse - logits[base + label]; }
        result[row * 2] = nll;
        result[row * 2 + 1] = lse;
      }`;
  return perRowProgram('lorafleet_xent', rows, body);
}

/**
 * TRL's token metrics: the row's maximum, the first column holding it (as
 * f32: exact below 2^24 columns), then sum e and sum e d with d = logit -
 * max, e = exp(d): hit = [first == label], entropy = log(sum e) - sum(e d) / sum(e).
 */
function statsProgram(rows: number) {
  const body = `${ROW_MAX}
      acc = 3.402823e38;
      for (var v = i32(i); v < uniforms.vocab; v += ${ROW_THREADS}) {
        if (live && logits[base + v] == maxAll) { acc = min(acc, f32(v)); }
      }
      ${workgroupReduce('first', 'min')}
      acc = 0.0;
      var dot = 0.0;
      for (var v = i32(i); v < uniforms.vocab; v += ${ROW_THREADS}) {
        if (live) {
          let d = logits[base + v] - maxAll;
          let e = exp(d);
          acc += e;
          dot += e * d;
        }
      }
      ${workgroupReduce('sumAll', 'sum')}
      acc = dot;
      ${workgroupReduce('dotAll', 'sum')}
      if (i == 0u && live) {
        let label = labels[row];
        var hit = 0.0;
        var entropy = 0.0;
        if (label >= 0) {
          hit = select(0.0, 1.0, i32(first) == label);
          entropy = log(sumAll) - dotAll / sumAll;
        }
        result[row * 2] = hit;
        result[row * 2 + 1] = entropy;
      }`;
  return perRowProgram('lorafleet_token_stats', rows, body);
}

/**
 * WGSL: d loss / d logit at flat `index` of row-major [n, vocab] logits, the
 * logit's value being `logit` (`g`, 0 on ignored rows).
 */
export function xentGradValue(logit: string): string {
  return `
      let row = index / uniforms.vocab;
      let v = index - row * uniforms.vocab;
      let label = labels[row];
      var g = 0.0;
      if (label >= 0) {
        let p = exp(${logit} - stats[row * 2 + 1]);
        g = dy[row] * (p - select(0.0, 1.0, v == label));
      }`;
}

function gradProgram(util: FlatDispatchUtil, shape: [number, number]) {
  return elementwiseProgram(util, {
    shaderKey: 'lorafleet_xent_grad',
    variableNames: ['logits', 'stats', 'labels', 'dy'],
    shape,
    uniforms: 'vocab : i32,',
    body: `${xentGradValue('logits[index]')}
      setOutputAtIndex(index, g);`,
  });
}

function checkRows(logits: Info, labels: Info, what: string): [number, number] {
  if (logits.shape.length !== 2 || logits.dtype !== 'float32') {
    throw new Error(
      `${what}: logits must be float32 [n, V], got ${logits.dtype} [${logits.shape}]`,
    );
  }
  const [n, v] = logits.shape as [number, number];
  if (labels.dtype !== 'int32' || labels.shape.length !== 1 || labels.shape[0] !== n) {
    throw new Error(`${what}: labels must be int32 [${n}], got ${labels.dtype} [${labels.shape}]`);
  }
  return [n, v];
}

/** A row program over logits [n, W] and labels (LoraFleetXent's or LoraFleetTokenStats'), attr `vocab` <= W. */
function perRow(kernel: string, program: (rows: number) => ReturnType<typeof forwardProgram>) {
  return (args: WebGpuKernelArgs): Info => {
    const { logits, labels } = args.inputs as { logits: Info; labels: Info };
    const [n, width] = checkRows(logits, labels, kernel);
    const v = (args.attrs as { vocab?: number } | undefined)?.vocab ?? width;
    if (!(Number.isInteger(v) && v >= 1 && v <= width))
      throw new Error(`${kernel}: vocab ${v} must be 1..${width} (the rows' width)`);
    const uniforms = [
      { type: 'int32' as const, data: [n] },
      { type: 'int32' as const, data: [v] },
      { type: 'int32' as const, data: [width] },
    ];
    const backend = args.backend as unknown as WebGpuProgramRunner;
    return backend.runWebGPUProgram(program(n), [logits, labels], 'float32', uniforms);
  };
}

function backward(util: FlatDispatchUtil) {
  return (args: WebGpuKernelArgs): Info => {
    const { logits, stats, labels, dy } = args.inputs as Record<string, Info>;
    const [n, v] = checkRows(logits!, labels!, LORAFLEET_XENT_GRAD);
    const backend = args.backend as unknown as WebGpuProgramRunner;
    const program = gradProgram(util, [n, v]);
    const inputs = [logits!, stats!, labels!, dy!];
    return backend.runWebGPUProgram(program, inputs, 'float32', [{ type: 'int32', data: [v] }]);
  };
}

/** Registers the three kernels for 'webgpu' (once). */
export function registerWebGpuCrossEntropy(
  api: Pick<typeof tf, 'registerKernel' | 'getKernel'>,
  util: FlatDispatchUtil,
): void {
  registerWebGpuKernels(api, [
    [LORAFLEET_XENT, perRow(LORAFLEET_XENT, forwardProgram)],
    [LORAFLEET_XENT_GRAD, backward(util)],
    [TOKEN_STATS, perRow(TOKEN_STATS, statsProgram)],
  ]);
}
