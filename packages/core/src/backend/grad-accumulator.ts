// A step's gradients summed on the device across its micro-batches: each
// micro-batch adds its fused gradient (the parameters' order), its loss and
// any statistics of its objective (a preference step's reward sums) to one
// device tensor [n + 1 + stats], which is read back once per step, for the
// all-reduce. Between micro-batches nothing is read: settle() waits for the
// device instead (webgpu), so that a micro-batch's measured time is still
// its compute. Sums are float32 additions in micro-batch order, the same
// bits as adding the read-back gradients on the CPU (tested).
import type { TrainableParameters } from '../lora/params.js';
import { tf } from './tf.js';

type Parameters = Pick<TrainableParameters, 'slots' | 'size' | 'variables'>;

/** What tfjs-backend-webgpu's backend offers to wait for its queue. */
interface QueuedBackend {
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  queue: { onSubmittedWorkDone(): Promise<void> };
}

/**
 * Resolves once the backend has finished the work queued so far, reading
 * nothing back. cpu and wasm (and tfjs-node) compute within the op call:
 * nothing to wait for.
 */
export async function settleDevice(): Promise<void> {
  if (tf.getBackend() !== 'webgpu') return;
  const backend = tf.backend() as unknown as QueuedBackend;
  submitWebGpuQueue(backend);
  await backend.queue.onSubmittedWorkDone();
}

/**
 * Submits what tfjs-backend-webgpu has encoded so far, as its own reads do
 * (backend_webgpu.ts getBufferData): close the open pass, then submit. Work
 * queued after it sees its writes.
 */
export function submitWebGpuQueue(
  backend: Pick<
    QueuedBackend,
    'ensureCommandEncoderReady' | 'endComputePassEncoder' | 'submitQueue'
  >,
): void {
  backend.ensureCommandEncoderReady();
  backend.endComputePassEncoder();
  backend.submitQueue();
}

export class GradientAccumulator {
  /** [n + 1 + stats]: the summed gradient, the summed loss, the summed stats; undefined before the first add. */
  private sum: tf.Tensor1D | undefined;

  constructor(
    private readonly params: Parameters,
    /** How many statistics each `add` brings besides its loss (a preference step's reward sums). */
    private readonly statCount = 0,
  ) {}

  /**
   * Runs `loss` under autodiff with respect to the parameters; adds its
   * gradient and value, and `stats()` [statCount] (read after `loss`, not
   * differentiated; absent: nothing).
   */
  add(loss: () => tf.Scalar, stats?: () => tf.Tensor1D | null): void {
    const next = tf.tidy(() => {
      const { value, grads } = tf.variableGrads(loss, this.params.variables);
      const parts = this.params.slots.map((slot) => {
        const g = grads[slot.variable.name];
        if (!g)
          throw new Error(`no gradient reached ${slot.name}: is the layer on the loss's path?`);
        return g.reshape([-1]);
      });
      const extra = stats?.() ?? tf.zeros([this.statCount]);
      if (extra.size !== this.statCount)
        throw new Error(`a batch brought ${extra.size} statistics, not ${this.statCount}`);
      const flat = tf.concat([...parts, value.reshape([1]), extra]) as tf.Tensor1D; // [n + 1 + stats]
      return this.sum ? (tf.add(this.sum, flat) as tf.Tensor1D) : flat;
    });
    this.sum?.dispose();
    this.sum = next;
  }

  /**
   * The sums, with one read (zeros when nothing was added): `grads` [n],
   * `loss` and `stats` [statCount]. The accumulator is empty again.
   */
  async take(): Promise<{ grads: Float32Array; loss: number; stats: Float32Array }> {
    const n = this.params.size;
    const sum = this.sum;
    this.sum = undefined;
    if (!sum)
      return { grads: new Float32Array(n), loss: 0, stats: new Float32Array(this.statCount) };
    try {
      const values = (await sum.data()) as Float32Array;
      if (values.length !== n + 1 + this.statCount)
        throw new Error(
          `read ${values.length - 1 - this.statCount} gradients, the parameters hold ${n}`,
        );
      return { grads: values.subarray(0, n), loss: values[n]!, stats: values.subarray(n + 1) };
    } finally {
      sum.dispose();
    }
  }

  /** Drops a partial sum (an aborted step). */
  dispose(): void {
    this.sum?.dispose();
    this.sum = undefined;
  }
}
