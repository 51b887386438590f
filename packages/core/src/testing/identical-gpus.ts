// Several identical GPUs on a machine without one, for the tests of
// `--gpus 0,1` with the webgpu backend: copies of SwiftShader's Vulkan driver,
// each a driver of its own to the Vulkan loader (its own library file), all
// with the same device name, as eight H200s of one host are to Dawn. The
// loader's driver log (VK_LOADER_DEBUG=driver) names the copy each device
// came from, which tells the copies apart where their names cannot.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { builtDeviceLayer, deviceLayerDir } from '../backend/vulkan-device-layer.js';
import { SWIFTSHADER_ICDS } from './vulkan-driver.js';

/** SwiftShader's device name, as Dawn lists it. */
export const SWIFTSHADER_NAME = 'SwiftShader Device (Subzero)';

/**
 * Writes `count` copies of SwiftShader (library and manifest) under `dir`:
 * returns the manifests, `:`-joined for VK_DRIVER_FILES / VK_ICD_FILENAMES,
 * and each copy's library path (copy i in `libraries[i]`).
 */
export function identicalSwiftShaders(
  dir: string,
  count: number,
): { driverFiles: string; libraries: string[] } {
  const icd = SWIFTSHADER_ICDS.find((f) => existsSync(f));
  if (!icd)
    throw new Error(`no SwiftShader Vulkan driver (looked for ${SWIFTSHADER_ICDS.join(', ')})`);
  const manifest = JSON.parse(readFileSync(icd, 'utf8')) as { ICD: { library_path: string } };
  const library = resolve(dirname(icd), manifest.ICD.library_path);
  const manifests: string[] = [];
  const libraries: string[] = [];
  for (let i = 0; i < count; i++) {
    const copy = join(dir, `swiftshader-${i}`);
    mkdirSync(copy, { recursive: true });
    const lib = join(copy, 'libvk_swiftshader.so');
    copyFileSync(library, lib);
    const json = join(copy, 'icd.json');
    writeFileSync(
      json,
      JSON.stringify({ ...manifest, ICD: { ...manifest.ICD, library_path: lib } }),
    );
    manifests.push(json);
    libraries.push(lib);
  }
  return { driverFiles: manifests.join(':'), libraries };
}

/**
 * Builds the device-select layer if it is not built (a CI machine gets the
 * compiler and headers from scripts/test-machine.sh after `pnpm build` ran),
 * and returns its directory; throws what to install when it cannot.
 */
export function requireDeviceLayer(): string {
  const built = builtDeviceLayer();
  if (built) return built;
  const script = join(dirname(deviceLayerDir()), '..', 'scripts', 'build-vulkan-layer.mjs');
  const said = execFileSync(process.execPath, [script], { encoding: 'utf8' });
  const now = builtDeviceLayer();
  if (!now)
    throw new Error(`the identical-GPU tests need the Vulkan device-select layer: ${said.trim()}`);
  return now;
}

/**
 * Compiles the test layer packages/core/test/fixtures/fake-pci-layer.c into
 * `dir`, which gives each device a made-up PCI address in the reverse of the
 * loader's order (SwiftShader reports none), and returns the variables that
 * load it under the device-select layer.
 */
export function fakePciLayer(dir: string): Record<string, string> {
  const root = dirname(dirname(deviceLayerDir()));
  const out = join(dir, 'fake-pci-layer');
  mkdirSync(out, { recursive: true });
  const library = join(out, 'libVkLayer_fake_pci.so');
  execFileSync(process.env.CC || 'cc', [
    ...['-std=c11', '-D_GNU_SOURCE', '-Wall', '-Werror', '-fPIC', '-shared'],
    ...['-o', library, join(root, 'test', 'fixtures', 'fake-pci-layer.c')],
  ]);
  const name = 'VK_LAYER_LORAFLEET_test_fake_pci';
  const layer = { name, type: 'GLOBAL', library_path: library, api_version: '1.3.0' };
  const manifest = {
    file_format_version: '1.1.2',
    layer: { ...layer, implementation_version: '1', description: 'test: made-up PCI addresses' },
  };
  writeFileSync(join(out, 'fake-pci-layer.json'), JSON.stringify(manifest));
  return { VK_LAYER_PATH: out, VK_INSTANCE_LAYERS: name };
}

/** The library each of the loader's devices came from, in its driver log order ("Using NAME with driver: PATH"). */
export function driversUsed(loaderLog: string): string[] {
  return [...loaderLog.matchAll(/Using "[^"]*" with driver: "([^"]+)"/g)].map((m) => m[1]!);
}
