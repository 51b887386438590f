// Fused softmax cross-entropy over the vocabulary, as two kernels on the cpu
// and wasm backends (TypeScript over the backend's memory, host-memory.ts):
//   forward:  logits [N, V], labels [N] -> nll [N], lse [N]
//   backward: logits, labels, lse, dnll [N] -> dlogits [N, V]
// The forward keeps one float per row (the log-sum-exp); the backward
// recomputes the probabilities from the logits while it writes the gradient,
// so [N, V] probabilities never exist. Rows whose label is negative (the
// ignore index) cost nothing and give 0. Sums and exponentials are float64
// (expPoly: fast-math.ts).
import { expPoly } from './fast-math.js';
import { HOST_BACKENDS, HOST_MEMORY, type HostBackendName } from './host-memory.js';
import type { tf } from './tf.js';

export const SOFTMAX_XENT = 'LoraFleetSoftmaxXent';
export const SOFTMAX_XENT_GRAD = 'LoraFleetSoftmaxXentGrad';

/**
 * Per row n: lse[n] = log sum_v exp(logits[n, v]) and
 * nll[n] = lse[n] - logits[n, labels[n]]; both 0 where labels[n] < 0.
 */
export function softmaxXentRows(
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  vocab: number,
  nll: Float32Array,
  lse: Float32Array,
): void {
  for (let n = 0; n < labels.length; n++) {
    const label = labels[n]!;
    if (label < 0) {
      nll[n] = 0;
      lse[n] = 0;
      continue;
    }
    const o = n * vocab;
    let max = -Infinity;
    for (let v = 0; v < vocab; v++) if (logits[o + v]! > max) max = logits[o + v]!;
    let sum = 0;
    for (let v = 0; v < vocab; v++) sum += expPoly(logits[o + v]! - max);
    const logSumExp = max + Math.log(sum);
    lse[n] = logSumExp;
    nll[n] = logSumExp - logits[o + label]!;
  }
}

/** dlogits[n, v] = dnll[n] (exp(logits[n, v] - lse[n]) - [v == labels[n]]); 0 on ignored rows. */
export function softmaxXentGradRows(
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  lse: ArrayLike<number>,
  dnll: ArrayLike<number>,
  vocab: number,
  out: Float32Array,
): void {
  for (let n = 0; n < labels.length; n++) {
    const label = labels[n]!;
    const o = n * vocab;
    if (label < 0) {
      out.fill(0, o, o + vocab);
      continue;
    }
    const g = dnll.length === 1 ? dnll[0]! : dnll[n]!;
    const shift = lse[n]!;
    for (let v = 0; v < vocab; v++) out[o + v] = g * expPoly(logits[o + v]! - shift);
    out[o + label] = out[o + label]! - g;
  }
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend };

/** logits [N, V] float32 and labels [N] int32 with every label < V, or an error saying which is wrong. */
function checkedRows(
  kernel: string,
  args: KernelArgs,
): { logits: tf.TensorInfo; labels: tf.TensorInfo; rows: number; vocab: number } {
  const { logits, labels } = args.inputs;
  if (!logits || !labels) throw new Error(`${kernel}: inputs logits and labels are required`);
  if (logits.shape.length !== 2 || logits.dtype !== 'float32') {
    throw new Error(
      `${kernel}: logits must be float32 [N, V], got ${logits.dtype} [${logits.shape.join(', ')}]`,
    );
  }
  const [rows, vocab] = logits.shape as [number, number];
  if (labels.dtype !== 'int32' || labels.shape.length !== 1 || labels.shape[0] !== rows) {
    throw new Error(
      `${kernel}: labels must be int32 [${rows}], got ${labels.dtype} [${labels.shape.join(', ')}]`,
    );
  }
  return { logits, labels, rows, vocab };
}

function assertLabelsBelow(kernel: string, labels: ArrayLike<number>, vocab: number): void {
  for (let n = 0; n < labels.length; n++) {
    if (labels[n]! >= vocab) {
      throw new Error(
        `${kernel}: label ${labels[n]} of row ${n} is outside the vocabulary (0..${vocab - 1})`,
      );
    }
  }
}

function forwardKernel(backendName: HostBackendName) {
  return (args: KernelArgs): tf.TensorInfo[] => {
    const { logits, labels, rows, vocab } = checkedRows(SOFTMAX_XENT, args);
    const { infos, outs, ins } = HOST_MEMORY[backendName](
      args.backend,
      [
        { shape: [rows], dtype: 'float32' },
        { shape: [rows], dtype: 'float32' },
      ],
      [logits, labels],
    );
    assertLabelsBelow(SOFTMAX_XENT, ins[1]!, vocab);
    softmaxXentRows(ins[0]!, ins[1]!, vocab, outs[0] as Float32Array, outs[1] as Float32Array);
    return infos;
  };
}

function gradKernel(backendName: HostBackendName) {
  return (args: KernelArgs): tf.TensorInfo => {
    const { logits, labels, rows, vocab } = checkedRows(SOFTMAX_XENT_GRAD, args);
    const { lse, dnll } = args.inputs;
    if (!lse || lse.shape.length !== 1 || lse.shape[0] !== rows) {
      throw new Error(`${SOFTMAX_XENT_GRAD}: lse must be [${rows}]`);
    }
    if (!dnll || (dnll.shape.reduce((a, b) => a * b, 1) !== rows && dnll.shape.length !== 0)) {
      throw new Error(`${SOFTMAX_XENT_GRAD}: dnll must be [${rows}] or a scalar`);
    }
    const { infos, outs, ins } = HOST_MEMORY[backendName](
      args.backend,
      [{ shape: [rows, vocab], dtype: 'float32' }],
      [logits, labels, lse, dnll],
    );
    softmaxXentGradRows(ins[0]!, ins[1]!, ins[2]!, ins[3]!, vocab, outs[0] as Float32Array);
    return infos[0]!;
  };
}

/** Both kernels on cpu and wasm (registered from tf.ts through step-kernels.ts). */
export const SOFTMAX_XENT_KERNELS: readonly tf.KernelConfig[] = HOST_BACKENDS.flatMap((b) => [
  {
    kernelName: SOFTMAX_XENT,
    backendName: b,
    kernelFunc: forwardKernel(b) as unknown as tf.KernelFunc,
  },
  {
    kernelName: SOFTMAX_XENT_GRAD,
    backendName: b,
    kernelFunc: gradKernel(b) as unknown as tf.KernelFunc,
  },
]);
