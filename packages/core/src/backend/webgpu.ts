// The webgpu backend under Node.js: Dawn (the `webgpu` npm package, an optional
// dependency) provides navigator.gpu, @tensorflow/tfjs-backend-webgpu the
// kernels. startWebGpu() opens the adapter that webgpu-dawn.ts picks (so that a
// worker can be pinned to one GPU, `--gpu I`), registers the project's kernels
// and tfjs's backend on that device, and keeps its errors.
import { tf } from './tf.js';
import {
  POWER,
  chooseAdapter,
  dawnFlags,
  listWebGpuAdapters,
  loadDawn,
  noAdapterError,
  type GpuAdapterInfoLike,
  type GpuAdapterLike,
  type GpuDeviceLike,
  type GpuLike,
  type DawnModule,
  type WebGpuAdapterListing,
  type WebGpuOptions,
} from './webgpu-dawn.js';
import {
  DEVICE_LAYER,
  type DeviceLayerReport,
  builtDeviceLayer,
  deviceLayerEnv,
  deviceLayerReportFile,
  takeDeviceLayerReport,
} from './vulkan-device-layer.js';
import { registerUnpackBaseWebGpu } from './unpack-base.js';
import {
  registerWebGpuCrossEntropy,
  registerWebGpuMatMul,
  registerWebGpuNorm,
  registerWebGpuActivations,
  registerWebGpuAttention,
  registerWebGpuDropout,
} from './webgpu-kernels/index.js';

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
  /**
   * Where the device-select layer opened it (identical GPUs): its rank among
   * the adapters so named, in PCI address order, and its PCI address when the
   * driver reports one; null when Dawn's own name match did.
   */
  sameName: { ordinal: number; count: number; pci: string | null } | null;
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

const MAX_ERRORS_KEPT = 20;

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
    webgpu_util: Parameters<typeof registerUnpackBaseWebGpu>[1];
  };
  registerUnpackBaseWebGpu(tf, mod.webgpu_util); // the project's own WGSL kernels
  registerWebGpuMatMul(tf); // tiled matmuls (webgpu-kernels/), replacing BatchMatMul
  registerWebGpuCrossEntropy(tf, mod.webgpu_util); // fused softmax cross-entropy
  registerWebGpuNorm(tf, mod.webgpu_util); // fused LayerNorm / RMSNorm
  registerWebGpuActivations(tf, mod.webgpu_util); // fused gelu_new and SwiGLU
  registerWebGpuAttention(tf); // causal attention without [T, T] matrices
  registerWebGpuDropout(tf, mod.webgpu_util); // dropout masks drawn in the kernel
  backendClass = mod.WebGPUBackend;
  return backendClass;
}

function describeDevice(
  index: number | null,
  backend: string,
  info: GpuAdapterInfoLike,
  listed?: string,
  layer?: DeviceLayerReport,
): WebGpuDevice {
  return {
    index,
    backend,
    name: listed || info.device || info.description || info.vendor || 'unknown adapter',
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    description: info.description ?? '',
    sameName:
      layer && layer.ordinal !== null
        ? { ordinal: layer.ordinal, count: layer.count, pci: layer.pci }
        : null,
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
 * Opens adapter `index` of Dawn's list (Dawn's default adapter when
 * undefined): by Dawn's `adapter=` flag, or, for one of several identical
 * GPUs, through the device-select layer, whose report says which it opened.
 */
async function openAdapter(
  create: DawnModule['create'],
  flags: readonly string[],
  index: number | undefined,
): Promise<{
  gpu: GpuLike;
  adapter: GpuAdapterLike;
  listing?: WebGpuAdapterListing;
  layer?: DeviceLayerReport;
}> {
  let chosen = [...flags];
  let listing: WebGpuAdapterListing | undefined;
  let reportFile: string | undefined;
  if (index !== undefined) {
    const list = await listWebGpuAdapters({ flags });
    if (list.length === 0) throw noAdapterError(flags);
    const how = chooseAdapter(list, index, builtDeviceLayer());
    listing = list[index];
    chosen = chosen.filter((f) => !f.startsWith('adapter='));
    if (how.kind === 'flag') chosen.push(how.flag);
    else {
      // Set for the process: its every later Vulkan instance shows this GPU only.
      reportFile = deviceLayerReportFile();
      Object.assign(process.env, deviceLayerEnv(how.dir, how.choice, reportFile));
    }
  }
  const gpu = create(chosen);
  let adapter: GpuAdapterLike | null;
  try {
    adapter = await gpu.requestAdapter(POWER);
  } catch (error) {
    throw new Error(`WebGPU: ${(error as Error).message}`);
  }
  const layer = reportFile === undefined ? undefined : takeDeviceLayerReport(reportFile);
  if (reportFile !== undefined) checkLayerReport(index!, layer);
  if (adapter === null) throw noAdapterError(flags);
  return { gpu, adapter, listing, layer };
}

/** Throws unless the device-select layer ran and exposed the device asked for. */
function checkLayerReport(index: number, report: DeviceLayerReport | undefined): void {
  if (report === undefined) {
    throw new Error(
      `--gpu ${index}: the Vulkan layer ${DEVICE_LAYER} did not run (VK_LAYER_PATH=` +
        `${process.env.VK_LAYER_PATH ?? ''}); VK_LOADER_DEBUG=layer shows why the loader left it out`,
    );
  }
  if (report.ordinal === null) {
    throw new Error(
      `--gpu ${index}: the Vulkan layer ${DEVICE_LAYER} sees ${report.count} device(s) named ` +
        `"${report.name}", fewer than Dawn listed`,
    );
  }
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
  const { gpu, adapter, listing, layer } = await openAdapter(create, flags, options.gpu);
  const device = await requestDevice(adapter);
  const backendName =
    listing?.backend ??
    flags.find((f) => f.startsWith('backend='))?.slice('backend='.length) ??
    'default';
  // The list's name is Dawn's own (what `adapter=` matched); GPUAdapterInfo's
  // fields can differ (on the null adapter: "Null backend" vs "null-backend").
  const info = describeDevice(options.gpu ?? null, backendName, adapter.info, listing?.name, layer);
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
