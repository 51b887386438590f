// The two places the project reads tfjs's engine state that its public API
// does not show (tfjs-core 4.22's engine.ts): whether ops are being recorded
// for a gradient, and a tape of its own inside a backward pass. A tfjs
// upgrade that changes the engine breaks these first (checkpoint.test.ts and
// shape-only.test.ts run both).
import { tf } from './tf.js';

interface EngineState {
  state: { activeTape: unknown; gradientDepth: number; kernelDepth: number };
  gradients(
    f: () => tf.Tensor,
    xs: tf.Tensor[],
    dy: tf.Tensor,
    allowNoGradients: boolean,
  ): { value: tf.Tensor; grads: (tf.Tensor | undefined)[] };
}

const engine = () => tf.engine() as unknown as EngineState;

/** Whether tfjs records ops for a gradient now (its engine's isTapeOn). */
export function recordingGradients(): boolean {
  const { state } = engine();
  return state.gradientDepth > 0 && state.kernelDepth === 0;
}

/**
 * d(f)/d(xs) times dy, from running f under a tape of its own, where a
 * backward pass is running. tfjs keeps one active tape: one started inside a
 * backward pass replaces the outer one (still needed to free its saved
 * tensors), so it is put back. An x that f does not reach gets zeros.
 */
export function nestedGradients(f: () => tf.Tensor, xs: tf.Tensor[], dy: tf.Tensor): tf.Tensor[] {
  const e = engine();
  const outer = e.state.activeTape;
  try {
    const { value, grads } = e.gradients(f, xs, dy, true);
    value.dispose();
    return xs.map((x, i) => grads[i] ?? tf.zerosLike(x));
  } finally {
    e.state.activeTape = outer;
  }
}
