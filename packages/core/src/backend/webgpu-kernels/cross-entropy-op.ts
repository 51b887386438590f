// The fused softmax cross-entropy as a differentiable op (cross-entropy.ts
// has the kernels): per-row negative log-likelihood of `labels` under
// softmax(logits), 0 where a label is negative (IGNORE_INDEX). Only on
// 'webgpu' with the project's kernels selected; ops/softmax-cross-entropy.ts
// (the one loss op every backend goes through) picks it there.
import { tf } from '../tf.js';
import { LORAFLEET_XENT, LORAFLEET_XENT_GRAD } from './cross-entropy.js';
import { webGpuMatMulChoice } from './matmul-kernel.js';

let enabled = true;

/** Turns the fused loss off (tests compare it with tfjs's path), or on again. */
export function useFusedCrossEntropy(on: boolean): void {
  enabled = on;
}

/** True on webgpu with the project's kernels (not LORAFLEET_WEBGPU_KERNELS=stock). */
export function fusedCrossEntropyAvailable(): boolean {
  return enabled && tf.getBackend() === 'webgpu' && webGpuMatMulChoice() === 'project';
}

/** logits [n, V], labels [n] int32 (negative: ignored) -> nll [n], differentiable in logits. */
export function crossEntropyRows(
  logits: tf.Tensor2D,
  labels: Int32Array | tf.Tensor1D,
): tf.Tensor1D {
  const [n] = logits.shape;
  const count = labels instanceof Int32Array ? labels.length : labels.shape[0];
  if (count !== n) {
    throw new Error(`crossEntropyRows: ${count} labels for ${n} rows of logits`);
  }
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
    const labelT = labels instanceof Int32Array ? tf.tensor1d(labels, 'int32') : labels;
    const stats = tf.engine().runKernel(LORAFLEET_XENT, { logits: x, labels: labelT }) as tf.Tensor; // [n, 2]
    const value = stats.slice([0, 0], [n, 1]).reshape([n]) as tf.Tensor1D;
    save([x, stats, labelT]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, st, lt] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        const inputs = { logits: xs, stats: st, labels: lt, dy };
        return [tf.engine().runKernel(LORAFLEET_XENT_GRAD, inputs) as tf.Tensor2D];
      },
    };
  });
  return op(logits) as tf.Tensor1D;
}
