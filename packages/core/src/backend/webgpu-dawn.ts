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
// be told apart from inside the process. A failed `adapter=` match rejects with
// the list of adapters, which is how listWebGpuAdapters() enumerates them.
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
