// TRL's per-token metrics of a causal LM's logits (SFTTrainer's
// `mean_token_accuracy` and `entropy`), as one kernel on cpu and wasm:
//   logits [N, V] float32, labels [N] int32 -> [N, 2]: (hit, entropy) per row
// hit is 1 where the row's first largest logit is its label's (torch's argmax
// returns the first of equal maxima), entropy is that of softmax(logits) in
// nats, computed around the row's maximum m as log(sum e) - sum(e d) / sum(e)
// with d = logit - m and e = exp(d): no log-probabilities are materialised.
// Rows whose label is negative (the ignore index) give (0, 0). On wasm the
// kernel runs as SIMD128 code (assembly/softmax-xent.ts); this TypeScript
// loop is the cpu backend's kernel, the reference, and wasm's fallback.
import { expPoly } from './fast-math.js';
import { HOST_BACKENDS, HOST_MEMORY, type HostBackendName } from './host-memory.js';
import { simdTokenStats } from './simd/step-kernels.js';
import type { HostKernelConfig } from './softmax-xent.js';
import type { tf } from './tf.js';

export const TOKEN_STATS = 'LoraFleetTokenStats';

/** out[2n] = [argmax(logits[n]) == labels[n]], out[2n + 1] = entropy of softmax(logits[n]); 0s where labels[n] < 0. */
export function tokenStatsRows(
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  vocab: number,
  out: Float32Array,
): void {
  for (let n = 0; n < labels.length; n++) {
    const label = labels[n]!;
    const o = n * vocab;
    if (label < 0) {
      out[2 * n] = 0;
      out[2 * n + 1] = 0;
      continue;
    }
    let [max, arg] = [logits[o]!, 0];
    for (let v = 1; v < vocab; v++) {
      if (logits[o + v]! > max) [max, arg] = [logits[o + v]!, v];
    }
    let [sum, dot] = [0, 0];
    for (let v = 0; v < vocab; v++) {
      const d = logits[o + v]! - max;
      const e = expPoly(d);
      sum += e;
      dot += e * d;
    }
    out[2 * n] = arg === label ? 1 : 0;
    out[2 * n + 1] = Math.log(sum) - dot / sum;
  }
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend };

/** The kernel on `backendName`; with `simd`, wasm's SIMD code where it loads. */
function statsKernel(backendName: HostBackendName, simd: boolean) {
  return ({ inputs, backend }: KernelArgs): tf.TensorInfo => {
    const { logits, labels } = inputs;
    if (!logits || logits.shape.length !== 2 || logits.dtype !== 'float32')
      throw new Error(`${TOKEN_STATS}: logits must be float32 [N, V]`);
    const [rows, vocab] = logits.shape as [number, number];
    if (!labels || labels.dtype !== 'int32' || labels.shape.join() !== String(rows))
      throw new Error(`${TOKEN_STATS}: labels must be int32 [${rows}]`);
    const { infos, outs, ins } = HOST_MEMORY[backendName](
      backend,
      [{ shape: [rows, 2], dtype: 'float32' }],
      [logits, labels],
    );
    for (let n = 0; n < rows; n++) {
      if (ins[1]![n]! >= vocab)
        throw new Error(
          `${TOKEN_STATS}: label ${ins[1]![n]} of row ${n} is outside 0..${vocab - 1}`,
        );
    }
    if (simd && simdTokenStats(backend, logits, labels, infos[0]!)) return infos[0]!;
    tokenStatsRows(ins[0]!, ins[1]!, vocab, outs[0] as Float32Array);
    return infos[0]!;
  };
}

/** The kernel on cpu and wasm (registered from tf.ts through step-kernels.ts); `host`: its TypeScript loop. */
export const TOKEN_STATS_KERNELS: readonly HostKernelConfig[] = HOST_BACKENDS.map((b) => ({
  kernelName: TOKEN_STATS,
  backendName: b,
  kernelFunc: statsKernel(b, b === 'wasm') as unknown as tf.KernelFunc,
  host: statsKernel(b, false) as unknown as tf.KernelFunc,
}));
