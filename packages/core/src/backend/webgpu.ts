// The webgpu backend under Node.js: Dawn (the `webgpu` npm package, an optional
// dependency) provides navigator.gpu, @tensorflow/tfjs-backend-webgpu the
// kernels. This module picks the adapter itself instead of letting tfjs take
// the first one, so that a worker can be pinned to one GPU (`--gpu I`).
//
// How Dawn chooses an adapter (dawn/node/binding/GPU.cpp, `webgpu` 0.6.2):
// requestAdapter() enumerates the adapters of ONE Dawn backend (Vulkan on
// Linux unless the flag `backend=` or env DAWNNODE_BACKEND names another),
// sorted by powerPreference, and returns the first one whose name
// (GPUAdapterInfo.device) CONTAINS the flag `adapter=NAME`, or the first one
// when that flag is absent. There is no index flag and WebGPU has no
// CUDA_VISIBLE_DEVICES: adapters with the same name (8 identical GPUs) cannot
// be told apart from inside the process. A failed `adapter=` match rejects with
// the list of adapters, which is how listWebGpuAdapters() enumerates them.
import { tf } from './tf.js';
import { registerUnpackHalvesWebGpu } from './unpack-halves.js';
import {
  registerWebGpuCrossEntropy,
  registerWebGpuMatMul,
  registerWebGpuNorm,
  registerWebGpuActivations,
  registerWebGpuAttention,
} from './webgpu-kernels/index.js';

/** One adapter as Dawn lists it, in the order requestAdapter() considers them. */
export interface WebGpuAdapterListing {
  index: number;
  /** Dawn's backend: 'vulkan', 'metal', 'd3d12', 'null', ... */
  backend: string;
  /** GPUAdapterInfo.device, e.g. "NVIDIA H200". */
  name: string;
}

export interface WebGpuOptions {
  /** Index into listWebGpuAdapters(); absent: Dawn's default (first high-performance) adapter. */
  gpu?: number;
  /**
   * Extra dawn.node flags, e.g. ['backend=null'] (Dawn's null device: runs no
   * shader but validates every one, which tests use) or
   * ['enable-dawn-features=...']. Default: env LORAFLEET_DAWN_FLAGS, split on spaces.
   */
  flags?: readonly string[];
}

/** What the worker reports as its device. */
export interface WebGpuDevice {
  /** The adapter index when --gpu chose it, else null (Dawn's default adapter). */
  index: number | null;
  backend: string;
  name: string;
  vendor: string;
  architecture: string;
  /** Usually the driver, e.g. "NVIDIA: 580.95.05". */
  description: string;
}

// Minimal shapes of the WebGPU objects this module touches (the `webgpu`
// package's types pull in @webgpu/types, which would add DOM globals to core).
interface GpuAdapterInfoLike {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
}
interface GpuDeviceLike {
  destroy(): void;
  lost: Promise<{ reason?: string; message?: string }>;
  onuncapturederror: ((event: { error?: { message?: string } }) => void) | null;
}
interface GpuAdapterLike {
  info: GpuAdapterInfoLike;
  features: { has(name: string): boolean };
  limits: Record<string, number>;
  requestDevice(descriptor?: object): Promise<GpuDeviceLike>;
}
interface GpuLike {
  requestAdapter(options?: { powerPreference?: string }): Promise<GpuAdapterLike | null>;
}
interface DawnModule {
  create(flags: string[]): GpuLike;
  globals: Record<string, unknown>;
}
interface TensorDataLike {
  values?: unknown;
  dtype?: string;
}
interface WebGpuBackendLike extends tf.KernelBackend {
  tensorMap: { get(dataId: object): TensorDataLike | undefined };
}
type WebGpuBackendClass = new (
  device: GpuDeviceLike,
  info: GpuAdapterInfoLike,
) => WebGpuBackendLike;

const POWER = { powerPreference: 'high-performance' } as const;
/** An `adapter=` value no adapter name contains: makes Dawn reject with the list. */
const LIST_SENTINEL = 'adapter=\u0001lorafleet: list the adapters\u0001';
const MAX_ERRORS_KEPT = 20;

let dawn: DawnModule | undefined;
let backendClass: WebGpuBackendClass | undefined;
let started:
  | {
      gpu: GpuLike;
      device: GpuDeviceLike;
      info: WebGpuDevice;
      flags: readonly string[];
    }
  | undefined;
const uncaptured: string[] = [];

/** dawn.node flags from the options, else from env LORAFLEET_DAWN_FLAGS. */
export function dawnFlags(options: WebGpuOptions = {}): string[] {
  if (options.flags) return [...options.flags];
  const env = process.env.LORAFLEET_DAWN_FLAGS?.trim();
  return env ? env.split(/\s+/) : [];
}

/**
 * Dispatches per command-buffer submit (tfjs's WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE):
 * env LORAFLEET_WEBGPU_SUBMIT_BATCH, else tfjs's 15. The LoRA step is bound by
 * the CPU's dispatching on the H200 machine, but no batch size won there
 * consistently (15, 32, 64, 128 within the run-to-run noise; the figures are in
 * docs/webgpu-kernels.md), so tfjs's default stays; the knob is for measuring.
 */
export function webGpuSubmitBatch(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.LORAFLEET_WEBGPU_SUBMIT_BATCH?.trim();
  if (!raw) return DEFAULT_SUBMIT_BATCH;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(
      `LORAFLEET_WEBGPU_SUBMIT_BATCH=${raw}: expected a whole number of dispatches >= 1 (default ${DEFAULT_SUBMIT_BATCH})`,
    );
  return n;
}
const DEFAULT_SUBMIT_BATCH = 15;

async function loadDawn(): Promise<DawnModule> {
  if (dawn) return dawn;
  const specifier = 'webgpu'; // a variable: no type resolution of the optional package
  try {
    dawn = (await import(specifier)) as DawnModule;
  } catch (error) {
    throw new Error(
      `the webgpu backend needs the \`webgpu\` npm package (Dawn for Node.js), an optional ` +
        `dependency of @lorafleet/core that did not load on ${process.platform}-${process.arch}: ` +
        `${(error as Error).message}. Reinstall with optional dependencies, or use --backend wasm`,
    );
  }
  // tfjs-backend-webgpu uses GPUBufferUsage, GPUMapMode, ... as globals.
  const g = globalThis as Record<string, unknown>;
  for (const [key, value] of Object.entries(dawn.globals)) if (!(key in g)) g[key] = value;
  return dawn;
}

/**
 * Imports @tensorflow/tfjs-backend-webgpu, which registers its kernels (no
 * adapter needed; it registers the backend itself only when navigator.gpu
 * exists, and this module registers its own instead). Returns its
 * WebGPUBackend class.
 */
export async function loadWebGpuKernels(): Promise<WebGpuBackendClass> {
  if (backendClass) return backendClass;
  const specifier = '@tensorflow/tfjs-backend-webgpu';
  const mod = (await import(specifier)) as {
    WebGPUBackend: WebGpuBackendClass;
    webgpu_util: Parameters<typeof registerUnpackHalvesWebGpu>[1];
  };
  registerUnpackHalvesWebGpu(tf, mod.webgpu_util); // the project's own WGSL kernels
  registerWebGpuMatMul(tf); // tiled matmuls (webgpu-kernels/), replacing BatchMatMul
  registerWebGpuCrossEntropy(tf, mod.webgpu_util); // fused softmax cross-entropy
  registerWebGpuNorm(tf, mod.webgpu_util); // fused LayerNorm / RMSNorm
  registerWebGpuActivations(tf, mod.webgpu_util); // fused gelu_new and SwiGLU
  registerWebGpuAttention(tf); // causal attention without [T, T] matrices
  backendClass = mod.WebGPUBackend;
  return backendClass;
}

/** Parses the adapter list of dawn.node's "no adapter ... found" rejection. */
export function parseAdapterList(message: string): WebGpuAdapterListing[] {
  const out: WebGpuAdapterListing[] = [];
  for (const line of message.split('\n')) {
    const m = /^\s*\* backend: '([^']*)', name: '(.*)'\s*$/.exec(line);
    if (m) out.push({ index: out.length, backend: m[1]!, name: m[2]! });
  }
  return out;
}

/**
 * The adapters Dawn would choose from (one Dawn backend: Vulkan on Linux
 * unless `flags` say otherwise), in its order. Empty when there is none, as
 * on machines without a Vulkan GPU.
 */
export async function listWebGpuAdapters(
  options: Pick<WebGpuOptions, 'flags'> = {},
): Promise<WebGpuAdapterListing[]> {
  const { create } = await loadDawn();
  const flags = dawnFlags(options).filter((f) => !f.startsWith('adapter='));
  let adapter: GpuAdapterLike | null;
  try {
    adapter = await create([...flags, LIST_SENTINEL]).requestAdapter(POWER);
  } catch (error) {
    const list = parseAdapterList(String((error as Error).message ?? error));
    if (list.length === 0) throw error;
    return list;
  }
  if (adapter === null) return [];
  throw new Error('dawn.node returned an adapter for a name no adapter has');
}

/**
 * The dawn.node flag that makes requestAdapter() return adapter `index` of
 * `list`: `adapter=NAME` matches by substring and takes the first match, so
 * it works unless an earlier adapter's name contains this one's (identical
 * GPUs). Throws an error that says what to do instead.
 */
export function adapterFlag(list: readonly WebGpuAdapterListing[], index: number): string {
  const shown = list.map((a) => `  ${a.index}: ${a.name} (${a.backend})`).join('\n');
  if (!Number.isInteger(index) || index < 0 || index >= list.length) {
    throw new Error(
      list.length === 0
        ? `--gpu ${index}: there is no WebGPU adapter`
        : `--gpu ${index}: there are ${list.length} WebGPU adapter(s):\n${shown}`,
    );
  }
  const target = list[index]!;
  const earlier = list.slice(0, index).find((a) => a.name.includes(target.name));
  if (earlier) {
    throw new Error(
      `--gpu ${index}: Dawn selects adapters by name only, and adapter ${earlier.index} ` +
        `("${earlier.name}") matches "${target.name}" first:\n${shown}\n` +
        `With identical GPUs, run each worker where Vulkan shows it only its GPU (a container ` +
        `per GPU, e.g. the NVIDIA container toolkit's NVIDIA_VISIBLE_DEVICES, or a Vulkan ` +
        `device-selection layer such as Mesa's MESA_VK_DEVICE_SELECT) without --gpu, or use ` +
        `--backend tensorflow-gpu, which selects CUDA devices by index`,
    );
  }
  return `adapter=${target.name}`;
}

function noAdapterError(flags: readonly string[]): Error {
  const backend = flags.find((f) => f.startsWith('backend='))?.slice('backend='.length);
  return new Error(
    `no WebGPU adapter found (Dawn, ${backend ?? (process.env.DAWNNODE_BACKEND || 'its default')} backend). ` +
      `On Linux Dawn drives the GPU through Vulkan: it needs the Vulkan loader (libvulkan.so.1, ` +
      `Debian/Ubuntu package libvulkan1) and the GPU vendor's Vulkan driver (NVIDIA: the driver's ` +
      `nvidia_icd.json; set VK_DRIVER_FILES to it when it is outside /usr/share/vulkan/icd.d). ` +
      `Software Vulkan (Mesa lavapipe) lacks features Dawn needs. On a machine without a GPU, ` +
      `use --backend wasm`,
  );
}

function describeDevice(
  index: number | null,
  backend: string,
  info: GpuAdapterInfoLike,
  listed?: string,
): WebGpuDevice {
  return {
    index,
    backend,
    name: listed || info.device || info.description || info.vendor || 'unknown adapter',
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    description: info.description ?? '',
  };
}

/** Sets navigator.gpu (Node 20 has no navigator; Node 21+ has one without gpu). */
function exposeGpu(gpu: GpuLike | undefined): void {
  const g = globalThis as { navigator?: Record<string, unknown> };
  if (gpu === undefined) {
    if (g.navigator && 'gpu' in g.navigator) delete g.navigator.gpu;
    return;
  }
  g.navigator ??= {};
  Object.defineProperty(g.navigator, 'gpu', {
    value: gpu,
    configurable: true,
    writable: true,
    enumerable: true,
  });
}

/** What tfjs-backend-webgpu's own factory asks for: the adapter's limits (large buffers) and timestamp queries when there are any. */
async function requestDevice(adapter: GpuAdapterLike) {
  const limits = adapter.limits;
  const requiredLimits: Record<string, number> = {};
  for (const name of [
    'maxComputeWorkgroupStorageSize',
    'maxComputeWorkgroupsPerDimension',
    'maxStorageBufferBindingSize',
    'maxBufferSize',
    'maxComputeWorkgroupSizeX',
    'maxComputeInvocationsPerWorkgroup',
  ]) {
    const value = limits[name];
    if (typeof value === 'number') requiredLimits[name] = value;
  }
  const requiredFeatures = adapter.features.has('timestamp-query') ? ['timestamp-query'] : [];
  return adapter.requestDevice({ requiredFeatures, requiredLimits });
}

/**
 * Opens the adapter (and a device on it) and registers tfjs's 'webgpu'
 * backend on that device; the caller then sets the backend. A second call
 * keeps the open device when it asks for the same GPU (or names none), and
 * throws when it asks for another one: one process drives one GPU.
 */
export async function startWebGpu(options: WebGpuOptions = {}): Promise<WebGpuDevice> {
  const flags = dawnFlags(options);
  if (started) {
    const same =
      (options.gpu === undefined || options.gpu === started.info.index) &&
      (options.flags === undefined || flags.join(' ') === started.flags.join(' '));
    if (!same) {
      throw new Error(
        `this process already drives WebGPU adapter ${started.info.index ?? '(default)'} ` +
          `(${started.info.name}); one process uses one GPU: start another worker for another one`,
      );
    }
    if (tf.findBackendFactory('webgpu')) return started.info;
  }
  const { create } = await loadDawn();
  const WebGPUBackend = await loadWebGpuKernels();
  let chosen = flags;
  let listing: WebGpuAdapterListing | undefined;
  if (options.gpu !== undefined) {
    const list = await listWebGpuAdapters({ flags });
    if (list.length === 0) throw noAdapterError(flags);
    chosen = [...flags.filter((f) => !f.startsWith('adapter=')), adapterFlag(list, options.gpu)];
    listing = list[options.gpu];
  }
  const gpu = create([...chosen]);
  let adapter: GpuAdapterLike | null;
  try {
    adapter = await gpu.requestAdapter(POWER);
  } catch (error) {
    throw new Error(`WebGPU: ${(error as Error).message}`);
  }
  if (adapter === null) throw noAdapterError(flags);
  const device = await requestDevice(adapter);
  const backendName =
    listing?.backend ??
    chosen.find((f) => f.startsWith('backend='))?.slice('backend='.length) ??
    'default';
  // The list's name is Dawn's own (what `adapter=` matched); GPUAdapterInfo's
  // fields can differ (on the null adapter: "Null backend" vs "null-backend").
  const info = describeDevice(options.gpu ?? null, backendName, adapter.info, listing?.name);
  // tfjs does not look at WebGPU errors: a failed shader would only show as
  // wrong numbers. Keep them (webGpuErrors()) and print the first few.
  device.onuncapturederror = (event) => {
    const message = event.error?.message ?? String(event.error);
    if (uncaptured.length < MAX_ERRORS_KEPT) {
      uncaptured.push(message);
      console.error(`webgpu: ${message}`);
    }
  };
  void device.lost.then((lost) => {
    if (lost.reason !== 'destroyed') {
      console.error(`webgpu: device lost (${lost.reason ?? 'unknown'}): ${lost.message ?? ''}`);
    }
  });
  exposeGpu(gpu); // the backend's constructor checks navigator.gpu
  tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', webGpuSubmitBatch());
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend(
    'webgpu',
    () => nodeReadSync(new WebGPUBackend(device, adapter.info)),
    0, // never chosen implicitly: only useBackend('webgpu') selects it
  );
  started = { gpu, device, info, flags };
  return info;
}

/**
 * tfjs-backend-webgpu's readSync (dataSync, arraySync) copies through an
 * OffscreenCanvas, which Node.js lacks, and Dawn maps GPU memory only
 * asynchronously: replace the obscure failure by one that says what to do.
 */
function nodeReadSync(backend: WebGpuBackendLike): WebGpuBackendLike {
  if (typeof (globalThis as { OffscreenCanvas?: unknown }).OffscreenCanvas !== 'undefined')
    return backend;
  const readSync = backend.readSync.bind(backend);
  backend.readSync = (dataId: object) => {
    const data = backend.tensorMap.get(dataId);
    if (data && (data.values != null || data.dtype === 'string')) return readSync(dataId);
    throw new Error(
      'dataSync()/arraySync() cannot read a tensor that lives on the GPU on the webgpu backend ' +
        'under Node.js (Dawn maps GPU memory only asynchronously): use `await tensor.data()` ' +
        '(or readAsync / lossAndGradsAsync from @lorafleet/core)',
    );
  };
  return backend;
}

/** The adapter this process drives, or undefined before startWebGpu(). */
export function webGpuDevice(): WebGpuDevice | undefined {
  return started?.info;
}

/** WebGPU validation and out-of-memory errors seen since the start (the first 20). */
export function webGpuErrors(): readonly string[] {
  return uncaptured;
}

/**
 * Removes the 'webgpu' backend, destroys the device and drops navigator.gpu:
 * Dawn keeps Node.js alive while its instance is referenced. Switch to
 * another backend first if tensors are still needed.
 */
export function releaseWebGpu(): void {
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  if (started) {
    started.device.destroy();
    exposeGpu(undefined);
    started = undefined;
  }
  uncaptured.length = 0;
}
