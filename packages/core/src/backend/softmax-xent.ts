// Fused softmax cross-entropy over the vocabulary, as two kernels on the cpu
// and wasm backends (TypeScript over the backend's memory, host-memory.ts):
//   forward:  logits [N, V], labels [N] -> nll [N], lse [N]
//   backward: logits, labels, lse, dnll [N] -> dlogits [N, V]
// The forward keeps one float per row (the log-sum-exp); the backward
// recomputes the probabilities from the logits while it writes the gradient,
// so [N, V] probabilities never exist. Rows whose label is negative (the
// ignore index) cost nothing and give 0. Sums and exponentials are float64
// (expPoly: fast-math.ts). On wasm the same kernels run as SIMD128 code in
// the heap (assembly/softmax-xent.ts through simd/step-kernels.ts); these
// TypeScript loops are the cpu backend's kernels, the reference, and wasm's
// fallback where the SIMD modules cannot load.
import { expPoly } from './fast-math.js';
import { HOST_BACKENDS, HOST_MEMORY, type HostBackendName } from './host-memory.js';
import { simdSoftmaxXent, simdSoftmaxXentGrad } from './simd/step-kernels.js';
import type { tf } from './tf.js';

/** A registered step kernel plus its TypeScript version on the same backend. */
export type HostKernelConfig = tf.KernelConfig & { host: tf.KernelFunc };

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

/** The kernel on `backendName`; with `simd`, wasm's SIMD code where it loads. */
function forwardKernel(backendName: HostBackendName, simd: boolean) {
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
    const [nll, lse] = infos as [tf.TensorInfo, tf.TensorInfo];
    if (simd && simdSoftmaxXent(args.backend, logits, labels, { nll, lse })) return infos;
    softmaxXentRows(ins[0]!, ins[1]!, vocab, outs[0] as Float32Array, outs[1] as Float32Array);
    return infos;
  };
}

function gradKernel(backendName: HostBackendName, simd: boolean) {
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
    // The SIMD kernel stores at each row's label: keep it inside the row.
    assertLabelsBelow(SOFTMAX_XENT_GRAD, ins[1]!, vocab);
    const inputs = { logits, labels, lse, dnll };
    if (simd && simdSoftmaxXentGrad(args.backend, inputs, infos[0]!)) return infos[0]!;
    softmaxXentGradRows(ins[0]!, ins[1]!, ins[2]!, ins[3]!, vocab, outs[0] as Float32Array);
    return infos[0]!;
  };
}

/**
 * Both kernels on cpu and wasm (registered from tf.ts through step-kernels.ts).
 * `host` is the TypeScript kernel on the same backend: on wasm, what runs
 * without the SIMD code (for benchmarks and tests that compare the two).
 */
export const SOFTMAX_XENT_KERNELS: readonly HostKernelConfig[] = HOST_BACKENDS.flatMap((b) => [
  {
    kernelName: SOFTMAX_XENT,
    backendName: b,
    kernelFunc: forwardKernel(b, b === 'wasm') as unknown as tf.KernelFunc,
    host: forwardKernel(b, false) as unknown as tf.KernelFunc,
  },
  {
    kernelName: SOFTMAX_XENT_GRAD,
    backendName: b,
    kernelFunc: gradKernel(b, b === 'wasm') as unknown as tf.KernelFunc,
    host: gradKernel(b, false) as unknown as tf.KernelFunc,
  },
]);
