// The rotary embedding in the rotate-half convention (transformers'
// apply_rotary_pos_emb: x cos + rotate_half(x) sin, rotate_half(x) =
// cat(-x2, x1)) as one differentiable op over all of each head: the fused
// kernel of backend/rotary.ts on cpu and wasm, the same float32 operations as
// the tfjs ops and so the same bits, forward and backward. Callers compose
// the tfjs ops where rotaryFusable says no (webgpu, partial or interleaved
// rotation).
import { ROTARY, rotaryShape } from '../backend/rotary.js';
import { tf } from '../backend/tf.js';

/** Whether `rotary` runs here for x [B, H, T, D] and tables [1 or B, 1, T, D]. */
export function rotaryFusable(x: tf.Tensor, cos: tf.Tensor): boolean {
  return (
    x.dtype === 'float32' &&
    tf.getKernel(ROTARY, tf.getBackend()) !== undefined &&
    rotaryShape(x.shape, cos.shape) !== null
  );
}

/** x [B, H, T, D] rotated by the (constant) tables cos, sin [1 or B, 1, T, D]. */
export function rotary(x: tf.Tensor4D, cos: tf.Tensor4D, sin: tf.Tensor4D): tf.Tensor4D {
  const run = (t: tf.Tensor, tables: tf.Tensor[], inverse: boolean) =>
    tf.engine().runKernel(ROTARY, { x: t, cos: tables[0]!, sin: tables[1]! }, {
      inverse,
    } as never) as tf.Tensor4D;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, save] = args as [tf.Tensor, tf.GradSaveFunc];
    // Kept for the backward pass: the caller's scope may dispose the tables before it runs
    // (packages/models' gradient-checkpointing tests fail without this).
    save([cos, sin]);
    return {
      value: run(input, [cos, sin], false),
      // A rotation's transpose is its inverse: the gradient keeps nothing of x.
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [run(dy, saved, true)],
    };
  });
  return op(x) as tf.Tensor4D;
}
