// The compute backend switch: one name per backend a worker can run on, and
// what the active one runs on (deviceName), for the worker's Hello.
import {
  BACKEND_DESCRIPTORS,
  type BackendName,
  type BackendOptions,
  backendDescriptor,
} from './descriptors/index.js';
import { tf } from './tf.js';
import { type WebGpuDevice, webGpuDevice } from './webgpu.js';

export { type BackendName, type BackendOptions } from './descriptors/index.js';

/**
 * wasm (default, any machine), cpu (pure JS reference), webgpu (GPUs through
 * Dawn), tensorflow / tensorflow-gpu (tfjs-node / tfjs-node-gpu, optional
 * packages the user installs): one descriptor each in descriptors/.
 */
export const BACKENDS: readonly BackendName[] = BACKEND_DESCRIPTORS.map((d) => d.name);
/** The backends that run on a GPU, where `gpu` picks one. */
export const GPU_BACKENDS: readonly BackendName[] = BACKEND_DESCRIPTORS.filter(
  (d) => d.kind === 'gpu',
).map((d) => d.name);

let active: { name: BackendName; gpu: number | undefined } | undefined;

/**
 * Selects and initialises a backend. Throws with the list of known backends
 * for an unknown name, and with what is missing when a backend cannot start
 * (no WebGPU adapter, tfjs-node not installed, ...).
 */
export async function useBackend(name: BackendName, options: BackendOptions = {}): Promise<void> {
  const descriptor = backendDescriptor(name);
  const { gpu } = options;
  if (gpu !== undefined) {
    if (!Number.isInteger(gpu) || gpu < 0) {
      throw new Error(`--gpu must be a GPU index (0, 1, ...), got ${String(gpu)}`);
    }
    if (!GPU_BACKENDS.includes(name)) {
      throw new Error(`--gpu ${gpu} needs a GPU backend (${GPU_BACKENDS.join(', ')}), not ${name}`);
    }
  }
  await descriptor.start(options);
  const tfjsName = descriptor.tfjsName;
  const ok = await tf.setBackend(tfjsName);
  await tf.ready();
  if (!ok || tf.getBackend() !== tfjsName) {
    throw new Error(`the "${name}" backend failed to initialise (tfjs reports ${tf.getBackend()})`);
  }
  active = {
    name,
    gpu: name === 'webgpu' ? (webGpuDevice()?.index ?? undefined) : (gpu ?? active?.gpu),
  };
}

/** Waits for the active backend's submitted device work (call before process.exit). */
export async function settleBackend(): Promise<void> {
  if (active) await backendDescriptor(active.name).settle?.();
}

/** The backend useBackend() selected last, or undefined. */
export function activeBackend(): BackendName | undefined {
  return active?.name;
}

export interface DeviceInfo {
  backend: BackendName | undefined;
  kind: 'cpu' | 'gpu';
  /** E.g. "cpu", "NVIDIA H200", "CUDA (tfjs-node-gpu)". */
  name: string;
  /** The GPU index chosen with `gpu`, else null. */
  index: number | null;
  /** webgpu only: the adapter as Dawn describes it. */
  adapter?: WebGpuDevice;
}

/** What the active backend computes on. */
export function deviceInfo(): DeviceInfo {
  const backend = active?.name;
  if (backend === 'webgpu' && tf.getBackend() === 'webgpu') {
    const adapter = webGpuDevice();
    if (adapter) return { backend, kind: 'gpu', name: adapter.name, index: adapter.index, adapter };
  }
  if (backend === 'tensorflow-gpu' && tf.getBackend() === 'tensorflow') {
    return { backend, kind: 'gpu', name: 'CUDA (tfjs-node-gpu)', index: active?.gpu ?? null };
  }
  return { backend, kind: 'cpu', name: 'cpu', index: null };
}

/**
 * One line for the worker's Hello and logs: "cpu", or the GPU with its index
 * when one was chosen, e.g. "gpu 1: NVIDIA H200" or "gpu: NVIDIA H200"; one
 * of several identical GPUs also says which, e.g. "gpu 3: NVIDIA H200 (4th of
 * 8 so named, PCI 0000:c6:00.0)".
 */
export function deviceName(): string {
  const d = deviceInfo();
  if (d.kind === 'cpu') return 'cpu';
  const same = d.adapter?.sameName;
  const which = same
    ? ` (${ordinalWord(same.ordinal + 1)} of ${same.count} so named` +
      `${same.pci === null ? '' : `, PCI ${same.pci}`})`
    : '';
  return `gpu${d.index === null ? '' : ` ${d.index}`}: ${d.name}${which}`;
}

/** 1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st. */
function ordinalWord(n: number): string {
  const teen = n % 100 >= 11 && n % 100 <= 13;
  const suffix = teen ? 'th' : ({ 1: 'st', 2: 'nd', 3: 'rd' } as Record<number, string>)[n % 10];
  return `${n}${suffix ?? 'th'}`;
}
