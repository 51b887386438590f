// tfjs's engine clones every tensor a gradient saves for the backward pass:
// `Engine.clone` runs the Identity kernel through the whole of `runKernel`
// (scopes, kernel lookup, profiling hooks, tensor tracking) and records a tape
// node. Every backend the project runs shares the buffer in Identity (cpu and
// webgpu do; wasm does with wasm-identity.ts), so the kernel's only effect is
// one more reference to x's data. On webgpu, where a step is bound by the CPU
// issuing its kernels, a GPT-2-small step made ~600 of these clones
// (docs/webgpu-kernels.md, "Host cost"). This takes the reference directly
// and records the same tape node; strings, data on another backend, and a
// backend without incRef keep tfjs's clone.
import type { tf } from './tf.js';

/** The engine internals this touches (tfjs-core 4.x `Engine`). */
interface EngineInternals {
  backend: { incRef?: (dataId: object) => void };
  state: {
    tensorInfo: WeakMap<object, { backend: unknown }>;
    activeScope: { name: string } | null;
  };
  clone(x: tf.Tensor): tf.Tensor;
  makeTensorFromTensorInfo(info: tf.TensorInfo, backend?: unknown): tf.Tensor;
  addTapeNode(
    kernelName: string,
    inputs: tf.NamedTensorMap,
    outputs: tf.Tensor[],
    gradientsFunc: (dy: tf.Tensor) => Record<string, () => tf.Tensor>,
    saved: tf.Tensor[],
    attrs: object,
  ): void;
  runKernel(name: string, inputs: object, attrs?: object): tf.Tensor;
  /** tfjs's own clone, while the shared one is installed. */
  lorafleetTfjsClone?: (x: tf.Tensor) => tf.Tensor;
}

/** Installs the shared clone on tfjs's engine; idempotent. Returns whether it installed it now. */
export function installSharedClone(api: Pick<typeof tf, 'engine'>): boolean {
  const engine = api.engine() as unknown as EngineInternals;
  if (engine.lorafleetTfjsClone) return false;
  const tfjsClone = engine.clone.bind(engine);
  engine.lorafleetTfjsClone = engine.clone;
  engine.clone = (x: tf.Tensor): tf.Tensor => {
    const backend = engine.backend;
    const info = engine.state.tensorInfo.get(x.dataId);
    if (x.dtype === 'string' || info?.backend !== backend || typeof backend.incRef !== 'function') {
      return tfjsClone(x);
    }
    backend.incRef(x.dataId);
    const y = engine.makeTensorFromTensorInfo(
      { dataId: x.dataId, shape: x.shape, dtype: x.dtype },
      backend,
    );
    // As tfjs's clone: the gradient of a clone is dy cast to float32.
    const grad = (dy: tf.Tensor) => ({
      x: () => engine.runKernel('Cast', { x: dy }, { dtype: 'float32' }),
    });
    engine.addTapeNode(engine.state.activeScope?.name ?? '', { x }, [y], grad, [], {});
    return y;
  };
  return true;
}

/** Puts tfjs's own clone back (benchmarks and tests compare the two); idempotent. */
export function uninstallSharedClone(api: Pick<typeof tf, 'engine'>): void {
  const engine = api.engine() as unknown as EngineInternals;
  if (!engine.lorafleetTfjsClone) return;
  engine.clone = engine.lorafleetTfjsClone;
  delete engine.lorafleetTfjsClone;
}
