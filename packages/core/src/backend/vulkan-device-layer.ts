// The Vulkan layer that shows a process one of several identical GPUs
// (vulkan-layer/device-select.c, built into dist/vulkan-layer/ by
// scripts/build-vulkan-layer.mjs). Dawn selects an adapter by a substring of
// its name; where that cannot single out adapter `--gpu I` (identical GPUs,
// or a name another one contains), the worker loads this layer before Dawn
// opens Vulkan, and the layer exposes only "the K-th device named NAME",
// taken in PCI address order. This module says where the layer is, sets the
// loader's variables for it, and reads what it reports.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The layer's name in its manifest (VK_INSTANCE_LAYERS). */
export const DEVICE_LAYER = 'VK_LAYER_LORAFLEET_device_select';
export const DEVICE_LAYER_LIBRARY = 'libVkLayer_lorafleet_device_select.so';
export const DEVICE_LAYER_MANIFEST = 'VkLayer_lorafleet_device_select.json';

/** Which device the layer exposes: the `ordinal`-th (from 0) named exactly `name`. */
export interface DeviceLayerChoice {
  ordinal: number;
  name: string;
}

/** What the layer exposed, of how many so named, at which PCI address. */
export interface DeviceLayerReport {
  /** The device's rank among those so named; null when it exposed none. */
  ordinal: number | null;
  name: string;
  count: number;
  /** "0000:c6:00.0", or null where the driver reports no address (SwiftShader). */
  pci: string | null;
}

/** @lorafleet/core's directory: src/backend/ in the sources, dist/src/backend/ when built. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

/** Where `pnpm build` puts the layer and its manifest. */
export function deviceLayerDir(): string {
  return join(packageRoot(), 'dist', 'vulkan-layer');
}

/** The directory holding a built layer, or undefined (not built: no C compiler or Vulkan headers then). */
export function builtDeviceLayer(dir = deviceLayerDir()): string | undefined {
  const built =
    existsSync(join(dir, DEVICE_LAYER_LIBRARY)) && existsSync(join(dir, DEVICE_LAYER_MANIFEST));
  return built ? dir : undefined;
}

/** How to build the layer, for the errors that need it. */
export const BUILD_DEVICE_LAYER =
  'build it with a C compiler and the Vulkan headers: `apt-get install gcc libvulkan-dev` ' +
  '(Debian/Ubuntu), then `node packages/core/scripts/build-vulkan-layer.mjs` in the repository ' +
  '(`pnpm build` does it when they are there)';

/** A loader list variable ("a:b") with `item` first, once. */
function withItem(list: string | undefined, item: string): string {
  const items = (list ?? '').split(delimiter).filter((s) => s !== '' && s !== item);
  return [item, ...items].join(delimiter);
}

/**
 * The variables that make the Vulkan loader run the layer in this process's
 * next Vulkan instances (the loader reads them at each vkCreateInstance):
 * VK_LAYER_PATH to find it (explicit layers; every loader version reads it),
 * VK_INSTANCE_LAYERS to enable it, and the layer's own two.
 */
export function deviceLayerEnv(
  dir: string,
  choice: DeviceLayerChoice,
  reportFile: string,
  env: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  return {
    VK_LAYER_PATH: withItem(env.VK_LAYER_PATH, dir),
    // First: nearest the application, so that it filters what every other layer shows.
    VK_INSTANCE_LAYERS: withItem(env.VK_INSTANCE_LAYERS, DEVICE_LAYER),
    LORAFLEET_VK_DEVICE: `${choice.ordinal}:${choice.name}`,
    LORAFLEET_VK_DEVICE_REPORT: reportFile,
  };
}

/** A fresh report file name for this process. */
export function deviceLayerReportFile(): string {
  return join(tmpdir(), `lorafleet-vk-device-${process.pid}-${Date.now()}.txt`);
}

/** Parses the layer's "K COUNT PCI NAME" line ("- COUNT - NAME" when it exposed none). */
export function parseDeviceLayerReport(text: string): DeviceLayerReport | undefined {
  const m = /^(\d+|-) (\d+) (\S+) (.*)$/.exec(text.trimEnd());
  if (!m) return undefined;
  return {
    ordinal: m[1] === '-' ? null : Number(m[1]),
    count: Number(m[2]),
    pci: m[3] === '-' ? null : m[3]!,
    name: m[4]!,
  };
}

/** Reads and removes the report; undefined when the layer wrote none (it did not run). */
export function takeDeviceLayerReport(file: string): DeviceLayerReport | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  rmSync(file, { force: true });
  return parseDeviceLayerReport(text);
}
