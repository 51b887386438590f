// Reading tensors back without dataSync(): on the webgpu backend under Node.js
// only `await tensor.data()` can read GPU memory (Dawn maps buffers
// asynchronously), so every path that must run there reads through these.
// On cpu and wasm they return exactly what the synchronous reads return.
import type { TrainableParameters } from '../lora/params.js';
import { tf } from './tf.js';

type Parameters = Pick<TrainableParameters, 'slots' | 'size' | 'variables'>;

/**
 * The values of `tensors`, flattened and concatenated into one Float32Array
 * with one read (one GPU round trip). The tensors are not disposed.
 */
export async function readAsync(tensors: readonly tf.Tensor[]): Promise<Float32Array> {
  if (tensors.length === 0) return new Float32Array(0);
  const flat = tf.tidy(() => {
    const parts = tensors.map((t) => tf.cast(t.reshape([-1]), 'float32'));
    return parts.length === 1 ? parts[0]! : tf.concat(parts);
  });
  try {
    const values = (await flat.data()) as Float32Array;
    // One tensor: `flat` may share storage with it (cpu), so hand out a copy.
    return tensors.length === 1 ? values.slice() : values;
  } finally {
    flat.dispose();
  }
}

/** TrainableParameters.read() without dataSync: every parameter, fused. */
export async function readParametersAsync(params: Parameters): Promise<Float32Array> {
  const out = await readAsync(params.slots.map((slot) => slot.variable));
  if (out.length !== params.size)
    throw new Error(`read ${out.length} values, the parameters hold ${params.size}`);
  return out;
}

/**
 * TrainableParameters.lossAndGrads() without dataSync: runs `loss` under
 * autodiff with respect to the parameters and returns the loss and the fused
 * gradient (in the parameters' order), read back with one transfer. No tensor
 * outlives the call.
 */
export async function lossAndGradsAsync(
  params: Parameters,
  loss: () => tf.Scalar,
): Promise<{ loss: number; grads: Float32Array }> {
  const { value, flat } = tf.tidy(() => {
    const { value, grads } = tf.variableGrads(loss, params.variables);
    const parts = params.slots.map((slot) => {
      const g = grads[slot.variable.name];
      if (!g) throw new Error(`no gradient reached ${slot.name}: is the layer on the loss's path?`);
      return g.reshape([-1]);
    });
    return { value, flat: parts.length === 1 ? parts[0]! : tf.concat(parts) };
  });
  try {
    const [lossValues, gradValues] = await Promise.all([value.data(), flat.data()]);
    if (gradValues.length !== params.size)
      throw new Error(`read ${gradValues.length} gradients, the parameters hold ${params.size}`);
    return { loss: lossValues[0] ?? NaN, grads: gradValues as Float32Array };
  } finally {
    tf.dispose([value, flat]);
  }
}
