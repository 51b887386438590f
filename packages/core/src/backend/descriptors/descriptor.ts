// What the project knows about one compute backend, in one place: how to
// start it, what tfjs calls it, whether it runs on a GPU, whether its tensors
// can be read synchronously, and how closely it must agree with the reference
// in the conformance suite. One file per backend; index.ts lists them.

export interface BackendOptions {
  /**
   * GPU backends only: which GPU. webgpu: an index into
   * listWebGpuAdapters() (Dawn's order); tensorflow-gpu: a CUDA device index
   * (through CUDA_VISIBLE_DEVICES). Absent: the backend's default GPU.
   */
  gpu?: number;
  /** webgpu only: extra dawn.node flags (default: env LORAFLEET_DAWN_FLAGS). */
  dawnFlags?: readonly string[];
}

/**
 * How far a backend may stray in the conformance suite
 * (packages/core/test/lora-conformance.test.ts, test/backend-conformance.test.ts).
 */
export interface ConformanceTolerance {
  /** Relative gap of a LoRA gradient against central differences (eps 1e-2). */
  gradient: number;
  /** Max |merged - unmerged| output, and |W after unmerge - W|. */
  merge: number;
  /** Max |W - (residual + scaling B A)| and output change at step 0 of PiSSA and OLoRA (the residual inits). */
  pissa: number;
  /** Max |A, B - wasm's| after 3 AdamW steps of a tiny GPT-2 LoRA run. */
  training: number;
  /** |mean eval loss - wasm's| on the tiny GPT-2. */
  loss: number;
}

/** The checks of the conformance suite, by name (what `skip` may name). */
export type ConformanceCheck =
  | 'gradients'
  | 'merge'
  | 'pissa'
  | 'halfBase'
  | 'adapters'
  | 'dropout'
  | 'leaks'
  | 'training'
  | 'eval'
  | 'generation';

export interface BackendDescriptor<Name extends string = string> {
  /** The name users pass to --backend. */
  readonly name: Name;
  /** tfjs's name for it (both tfjs-node packages register 'tensorflow'). */
  readonly tfjsName: string;
  readonly kind: 'cpu' | 'gpu';
  /**
   * Whether dataSync()/arraySync() work on every tensor. False on webgpu under
   * Node.js: Dawn maps GPU memory only asynchronously, so code that must run
   * there reads with `await tensor.data()`.
   */
  readonly syncReads: boolean;
  /** Loads and registers the backend with tfjs (the caller then selects it). */
  start(options: BackendOptions): Promise<void>;
  /**
   * Waits until work already handed to the device has finished (before the
   * process exits: Dawn on SwiftShader crashes at exit with work in flight).
   * Absent: nothing to wait for.
   */
  settle?(): Promise<void>;
  readonly tolerance: ConformanceTolerance;
  /** Conformance checks this backend cannot pass, each with why (none today). */
  readonly skip: Readonly<Partial<Record<ConformanceCheck, string>>>;
}

/** Keeps the literal name, so BackendName is derived from the list of descriptors. */
export function defineBackend<Name extends string>(
  descriptor: BackendDescriptor<Name>,
): BackendDescriptor<Name> {
  return descriptor;
}

/** The CPU backends: float32 in a fixed summation order. */
export const CPU_TOLERANCE: ConformanceTolerance = {
  gradient: 2e-3,
  merge: 1e-5,
  pissa: 1e-4,
  training: 1e-5,
  loss: 1e-5,
};

/** GPUs: fp32 FMA in another summation order, reductions split over workgroups (no TF32 in WGSL). */
export const GPU_TOLERANCE: ConformanceTolerance = {
  gradient: 1e-2,
  merge: 1e-4,
  pissa: 1e-3,
  training: 1e-4,
  loss: 1e-4,
};
