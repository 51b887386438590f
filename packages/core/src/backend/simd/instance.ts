// The project's SIMD kernels (packages/core/assembly, AssemblyScript) run in
// tfjs-backend-wasm's own memory: each module imports `env.memory` and is
// instantiated over the backend's WebAssembly.Memory, so kernels read their
// inputs and write their outputs where tfjs keeps tensors, with no copy in or
// out. The modules own no memory (no data segment, no stack, no allocator;
// scripts/kernel-compiler.mjs builds them so), which is what makes sharing
// the heap safe: they touch only the addresses a kernel passes them.
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { BATCH_MATMUL_WASM } from './batch-matmul.wasm.js';
import { GELU_NEW_WASM } from './gelu-new.wasm.js';
import { LAYER_NORM_WASM } from './layer-norm.wasm.js';
import { RMS_NORM_WASM } from './rms-norm.wasm.js';
import { ROTARY_WASM } from './rotary.wasm.js';
import { SOFTMAX_XENT_WASM } from './softmax-xent.wasm.js';
import { SWIGLU_WASM } from './swiglu.wasm.js';

/** The exports of assembly/batch-matmul.ts (pointers are heap addresses). */
export interface BatchMatMulExports {
  batchMatMulScratchBytes(m: number, n: number, k: number): number;
  batchMatMul(
    a: number,
    b: number,
    c: number,
    scratch: number,
    batch: number,
    m: number,
    n: number,
    k: number,
    aBatchStride: number,
    bBatchStride: number,
    transposeA: number,
    transposeB: number,
  ): void;
}

/** The exports of assembly/softmax-xent.ts. */
export interface SoftmaxXentExports {
  softmaxXent(
    logits: number,
    labels: number,
    rows: number,
    vocab: number,
    nll: number,
    lse: number,
  ): void;
  softmaxXentGrad(
    logits: number,
    labels: number,
    lse: number,
    dnll: number,
    dnllStride: number,
    rows: number,
    vocab: number,
    dlogits: number,
  ): void;
  tokenStats(logits: number, labels: number, rows: number, vocab: number, out: number): void;
}

/** The exports of assembly/gelu-new.ts. */
export interface GeluNewExports {
  geluNew(x: number, y: number, n: number): void;
  geluNewGrad(x: number, dy: number, dx: number, n: number): void;
}

/** The exports of assembly/layer-norm.ts. */
export interface LayerNormExports {
  layerNorm(
    x: number,
    gamma: number,
    beta: number,
    eps: number,
    rows: number,
    C: number,
    y: number,
    mean: number,
    rstd: number,
  ): void;
  layerNormGradScratchBytes(C: number): number;
  layerNormGrad(
    x: number,
    gamma: number,
    mean: number,
    rstd: number,
    dy: number,
    rows: number,
    C: number,
    dx: number,
    dgamma: number,
    dbeta: number,
    scratch: number,
  ): void;
}

/** The exports of assembly/swiglu.ts. */
export interface SwigluExports {
  swiglu(gate: number, up: number, y: number, n: number): void;
  swigluGrad(gate: number, up: number, dy: number, out: number, n: number, wrtGate: number): void;
}

/** The exports of assembly/rms-norm.ts. */
export interface RmsNormExports {
  rmsNorm(
    x: number,
    gamma: number,
    eps: number,
    rows: number,
    C: number,
    y: number,
    rstd: number,
  ): void;
  rmsNormGrad(
    x: number,
    gamma: number,
    rstd: number,
    dy: number,
    rows: number,
    C: number,
    dx: number,
  ): void;
}

/** The exports of assembly/rotary.ts. */
export interface RotaryExports {
  rotary(
    x: number,
    cos: number,
    sin: number,
    B: number,
    H: number,
    T: number,
    D: number,
    tableBatch: number,
    inverse: number,
    y: number,
  ): void;
}

/** Every module's exports together (their names do not collide). */
export type SimdKernels = BatchMatMulExports &
  SoftmaxXentExports &
  GeluNewExports &
  LayerNormExports &
  SwigluExports &
  RmsNormExports &
  RotaryExports;

/** The modules, one per assembly/*.ts kernel source. */
const MODULES: readonly string[] = [
  BATCH_MATMUL_WASM,
  SOFTMAX_XENT_WASM,
  GELU_NEW_WASM,
  LAYER_NORM_WASM,
  SWIGLU_WASM,
  RMS_NORM_WASM,
  ROTARY_WASM,
];

/**
 * Where an emscripten module keeps its memory: `asm` (the instance's exports)
 * in tfjs-backend-wasm 4.x, `wasmExports` or `wasmMemory` in newer emscripten.
 */
interface EmscriptenInternals {
  asm?: { memory?: unknown };
  wasmExports?: { memory?: unknown };
  wasmMemory?: unknown;
}

/** The WebAssembly JS API used here (the project's lib settings carry no DOM types). */
interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
  Memory: abstract new (...args: never[]) => WasmMemory;
}
const WebAssembly = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

let compiled: object[] | null | undefined;
const instances = new WeakMap<WasmMemory, SimdKernels>();

function decodeBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (ch) => ch.charCodeAt(0));
}

/** The compiled modules, or null where this engine has no wasm SIMD (compiled once). */
function simdModules(): object[] | null {
  if (compiled === undefined) {
    try {
      compiled = MODULES.map((text) => new WebAssembly.Module(decodeBase64(text)));
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

/**
 * The SIMD kernels over `backend`'s heap, or undefined where they cannot run:
 * no wasm SIMD, a tfjs whose emscripten module hides its memory, or the
 * threaded build (a shared memory, which these modules do not declare).
 * Callers then use tfjs's own kernels.
 */
export function simdKernels(backend: BackendWasm): SimdKernels | undefined {
  const wasm = backend.wasm as unknown as EmscriptenInternals;
  const memory = wasm.asm?.memory ?? wasm.wasmExports?.memory ?? wasm.wasmMemory;
  if (!(memory instanceof WebAssembly.Memory)) return undefined;
  const cached = instances.get(memory);
  if (cached) return cached;
  const modules = simdModules();
  if (modules === null || !(memory.buffer instanceof ArrayBuffer)) return undefined;
  const kernels = Object.assign(
    {},
    ...modules.map((module) => new WebAssembly.Instance(module, { env: { memory } }).exports),
  ) as SimdKernels;
  instances.set(memory, kernels);
  return kernels;
}
