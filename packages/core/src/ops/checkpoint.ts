// Gradient checkpointing (Chen et al. 2016, "Training Deep Nets with
// Sublinear Memory Cost"), as torch.utils.checkpoint: a block's forward
// keeps none of its intermediates for backward, only its input; backward
// runs the block again under a tape of its own and differentiates that.
// Activation memory falls from every intermediate of every block to one
// tensor per block plus one block's intermediates, for one more forward.
//
// The block must compute the same values again: every dropout mask here is
// a pure function of its seed (dropout.ts), so it does. Tensors the block
// reads besides its input (masks, rotary tables) go in `constants`, which are
// kept until backward; variables stay alive anyway.
import { nestedGradients } from '../backend/engine-tape.js';
import { tf } from '../backend/tf.js';

/** A block: its input [.., C] and constants -> its output, of the input's shape. */
export type CheckpointedBlock = (x: tf.Tensor, constants: readonly tf.Tensor[]) => tf.Tensor;

/**
 * `block(x, constants)`, differentiable with respect to `x` and to each
 * trainable one of `variables` (those the step trains: the rest are left out,
 * so no gradient of a frozen W is computed), with the block's intermediates
 * dropped after the forward pass and recomputed in the backward pass.
 */
export function checkpoint(
  block: CheckpointedBlock,
  x: tf.Tensor,
  constants: readonly tf.Tensor[],
  variables: readonly tf.Variable[],
): tf.Tensor {
  const trainable = variables.filter((v) => v.trainable);
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const input = args[0] as tf.Tensor;
    // Under a tape the forward runs with recording off (tfjs runs a custom
    // gradient's forward as one kernel), so only these are kept.
    (args[args.length - 1] as tf.GradSaveFunc)([input, ...constants]);
    return {
      value: block(input, constants),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [kept, ...keptConstants] = saved;
        return nestedGradients(() => block(kept!, keptConstants), [kept!, ...trainable], dy);
      },
    };
  });
  return op(x, ...trainable);
}
