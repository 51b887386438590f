// Dawn under Node.js (the `webgpu` npm package, an optional dependency of
// core): loading it, its flags, and which adapter it opens. webgpu.ts starts
// tfjs's backend on the adapter chosen here, rather than letting tfjs take the
// first one, so that a worker can be pinned to one GPU (`--gpu I`).
//
// How Dawn chooses an adapter (dawn/node/binding/GPU.cpp, `webgpu` 0.6.2):
// requestAdapter() enumerates the adapters of ONE Dawn backend (Vulkan on
// Linux unless the flag `backend=` or env DAWNNODE_BACKEND names another),
// sorted by powerPreference, and returns the first one whose name
// (GPUAdapterInfo.device) CONTAINS the flag `adapter=NAME`, or the first one
// when that flag is absent. There is no index flag and WebGPU has no
// CUDA_VISIBLE_DEVICES: adapters with the same name (8 identical GPUs) cannot
// be told apart through Dawn; chooseAdapter() sends those to a Vulkan layer of
// our own (vulkan-device-layer.ts). A failed `adapter=` match rejects with
// the list of adapters, which is how listWebGpuAdapters() enumerates them.
import { BUILD_DEVICE_LAYER, DEVICE_LAYER, type DeviceLayerChoice } from './vulkan-device-layer.js';
import { type VulkanProbe, diagnoseVulkan } from './vulkan-drivers.js';

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

// Minimal shapes of the WebGPU objects this module touches (the `webgpu`
// package's types pull in @webgpu/types, which would add DOM globals to core).
export interface GpuAdapterInfoLike {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
}
export interface GpuDeviceLike {
  destroy(): void;
  lost: Promise<{ reason?: string; message?: string }>;
  onuncapturederror: ((event: { error?: { message?: string } }) => void) | null;
}
export interface GpuAdapterLike {
  info: GpuAdapterInfoLike;
  features: { has(name: string): boolean };
  limits: Record<string, number>;
  requestDevice(descriptor?: object): Promise<GpuDeviceLike>;
}
export interface GpuLike {
  requestAdapter(options?: { powerPreference?: string }): Promise<GpuAdapterLike | null>;
}
export interface DawnModule {
  create(flags: string[]): GpuLike;
  globals: Record<string, unknown>;
}

export const POWER = { powerPreference: 'high-performance' } as const;
/** An `adapter=` value no adapter name contains: makes Dawn reject with the list. */
const LIST_SENTINEL = 'adapter=\u0001lorafleet: list the adapters\u0001';

let dawn: DawnModule | undefined;

/** dawn.node flags from the options, else from env LORAFLEET_DAWN_FLAGS. */
export function dawnFlags(options: WebGpuOptions = {}): string[] {
  if (options.flags) return [...options.flags];
  const env = process.env.LORAFLEET_DAWN_FLAGS?.trim();
  return env ? env.split(/\s+/) : [];
}

export async function loadDawn(): Promise<DawnModule> {
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

/** How requestAdapter() is made to return adapter `index` of the list. */
export type AdapterChoice =
  /** Dawn's `adapter=NAME` flag singles it out. */
  | { kind: 'flag'; flag: string }
  /** It does not (identical GPUs): the device-select layer in `dir` shows the process only this one. */
  | { kind: 'layer'; dir: string; choice: DeviceLayerChoice };

/**
 * How to open adapter `index` of `list`. `adapter=NAME` matches by substring
 * and takes the first match, so it serves unless another adapter's name
 * contains this one's (identical GPUs above all). Those go through the
 * device-select layer (vulkan-device-layer.ts), as the `ordinal`-th adapter so
 * named; all of them, so that each is counted in the layer's (PCI) order.
 * `layerDir`: the built layer (builtDeviceLayer()), undefined when not built.
 * Throws what to do where neither can serve.
 */
export function chooseAdapter(
  list: readonly WebGpuAdapterListing[],
  index: number,
  layerDir: string | undefined,
): AdapterChoice {
  const shown = list.map((a) => `  ${a.index}: ${a.name} (${a.backend})`).join('\n');
  if (!Number.isInteger(index) || index < 0 || index >= list.length) {
    throw new Error(
      list.length === 0
        ? `--gpu ${index}: there is no WebGPU adapter`
        : `--gpu ${index}: there are ${list.length} WebGPU adapter(s):\n${shown}`,
    );
  }
  const target = list[index]!;
  const clash = list.find((a) => a.index !== index && a.name.includes(target.name));
  if (!clash) return { kind: 'flag', flag: `adapter=${target.name}` };
  const ordinal = list.slice(0, index).filter((a) => a.name === target.name).length;
  if (target.backend === 'vulkan' && layerDir !== undefined) {
    return { kind: 'layer', dir: layerDir, choice: { ordinal, name: target.name } };
  }
  const why =
    target.backend === 'vulkan'
      ? `the Vulkan layer that tells them apart (${DEVICE_LAYER}) is not built: ${BUILD_DEVICE_LAYER}`
      : `that layer is Vulkan's, and this adapter is Dawn's ${target.backend} backend`;
  throw new Error(
    `--gpu ${index}: Dawn selects adapters by name only, and adapter ${clash.index} ` +
      `("${clash.name}") matches "${target.name}" too:\n${shown}\n` +
      `A worker tells such GPUs apart with a Vulkan layer of its own, but ${why}. ` +
      `Otherwise run each worker where the driver shows it only its GPU (a container per GPU, ` +
      `e.g. the NVIDIA container toolkit's NVIDIA_VISIBLE_DEVICES) without --gpu, or use ` +
      `--backend tensorflow-gpu, which selects CUDA devices by index`,
  );
}

/**
 * The adapters as `lorafleet-worker --list-gpus` prints them: the index
 * `--gpu` takes, and how a worker opens those that share a name.
 */
export function describeAdapters(
  list: readonly WebGpuAdapterListing[],
  layerDir: string | undefined,
): string {
  const lines = ["WebGPU adapters, in Dawn's order (the index --gpu I takes):"];
  for (const a of list) lines.push(`  ${a.index}: ${a.name} (${a.backend})`);
  const shared = list.filter((a) => chooseable(list, a.index, layerDir) !== 'flag');
  if (shared.length === 0) return lines.join('\n');
  const indices = shared.map((a) => a.index).join(', ');
  const vulkan = shared.every((a) => a.backend === 'vulkan');
  lines.push(
    `Adapters ${indices} share a name (or contain another's), which Dawn cannot tell apart: ` +
      (!vulkan
        ? "only the first so named can be opened here (the layer that tells them apart is Vulkan's)"
        : layerDir !== undefined
          ? `a worker opens each through the Vulkan layer ${DEVICE_LAYER} (${layerDir}), ` +
            'counting those so named in PCI address order'
          : `the Vulkan layer that tells them apart (${DEVICE_LAYER}) is not built: ${BUILD_DEVICE_LAYER}`),
  );
  return lines.join('\n');
}

/** 'flag' when Dawn's name match opens adapter `index`, else 'layer' or 'neither'. */
function chooseable(
  list: readonly WebGpuAdapterListing[],
  index: number,
  layerDir: string | undefined,
): 'flag' | 'layer' | 'neither' {
  try {
    return chooseAdapter(list, index, layerDir).kind;
  } catch {
    return 'neither';
  }
}

/**
 * "No adapter", with what this machine shows about its Vulkan drivers
 * (vulkan-drivers.ts) when Dawn looked through Vulkan: the reason, and the fix.
 */
export function noAdapterError(
  flags: readonly string[],
  probe: VulkanProbe = { env: process.env, root: '/' },
): Error {
  const named = flags.find((f) => f.startsWith('backend='))?.slice('backend='.length);
  const backend = named ?? probe.env.DAWNNODE_BACKEND;
  // Dawn's backend names for Vulkan; empty or unset is Vulkan on Linux too.
  const vulkan = process.platform === 'linux' && ['', 'vulkan', 'vk'].includes(backend ?? '');
  const findings = vulkan ? diagnoseVulkan(probe) : [];
  const seen = findings.length > 0 ? ` What this machine shows: ${findings.join('; ')}.` : '';
  return new Error(
    `no WebGPU adapter found (Dawn, ${backend || 'its default'} backend).${seen} ` +
      `On Linux Dawn drives the GPU through Vulkan: it needs the Vulkan loader (libvulkan.so.1, ` +
      `Debian/Ubuntu package libvulkan1) and the GPU vendor's Vulkan driver (NVIDIA: the driver's ` +
      `nvidia_icd.json; set VK_DRIVER_FILES to it when it is outside /usr/share/vulkan/icd.d). ` +
      `Software Vulkan (Mesa lavapipe) lacks features Dawn needs. On a machine without a GPU, ` +
      `use --backend wasm`,
  );
}
