// The webgpu tests run WGSL for real on machines without a GPU: Dawn drives
// Vulkan, and Debian's `chromium` package ships SwiftShader, a Vulkan driver
// that runs on the CPU (Mesa's lavapipe is refused by Dawn). This finds that
// driver and points the Vulkan loader at it before Dawn creates an adapter.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { VULKAN_LOADERS, loaderSearchPath } from '../backend/vulkan-drivers.js';

/** Set to 1 on a machine that has no Vulkan driver: webgpu leaves the default test backends. */
export const NO_VULKAN_ENV = 'LORAFLEET_NO_VULKAN';

/** Where distributions put SwiftShader's Vulkan ICD manifest. */
export const SWIFTSHADER_ICDS = [
  '/usr/lib/chromium/vk_swiftshader_icd.json', // Debian, Ubuntu's chromium deb
  '/usr/lib64/chromium-browser/vk_swiftshader_icd.json', // Fedora
  '/usr/lib/chromium-browser/vk_swiftshader_icd.json',
];

/** The Vulkan loader Dawn opens: one list, with the backend's diagnosis of a missing adapter. */
export { VULKAN_LOADERS };

/** Installed driver manifests Dawn can use: Mesa's lavapipe (lvp_icd) lacks features it needs. */
function systemIcds(dirs: readonly string[]): string[] {
  const out: string[] = [];
  for (const dir of dirs) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names)
      if (n.endsWith('.json') && !n.startsWith('lvp_icd')) out.push(join(dir, n));
  }
  return out;
}

export type VulkanDriver =
  /** VK_ICD_FILENAMES / VK_DRIVER_FILES were set already (a GPU machine's driver, e.g. test/gpu). */
  | { kind: 'preset'; variable: string; files: string }
  /** A driver installed where the loader looks by itself (no SwiftShader here). */
  | { kind: 'system'; icds: string[] }
  /** SwiftShader found and selected through VK_ICD_FILENAMES. */
  | { kind: 'swiftshader'; icd: string; loader: string }
  /** None, and the machine is marked as without one (LORAFLEET_NO_VULKAN=1). */
  | { kind: 'none' };

const INSTALL =
  'install the Debian packages chromium (it ships SwiftShader, /usr/lib/chromium/vk_swiftshader_icd.json) ' +
  'and libvulkan1 (the Vulkan loader): `bash scripts/test-machine.sh` does, as root or with sudo ' +
  '(apt-get install --no-install-recommends chromium libvulkan1)';

/**
 * Makes a Vulkan driver visible to Dawn for the webgpu tests: keeps one the
 * environment names, else selects SwiftShader (setting VK_ICD_FILENAMES, which
 * child processes inherit). Throws what to install when there is none, unless
 * the machine is marked as without one (env LORAFLEET_NO_VULKAN=1).
 */
export function requireVulkanDriver(
  env: NodeJS.ProcessEnv = process.env,
  exists: (path: string) => boolean = existsSync,
  icdDirs: readonly string[] = loaderSearchPath(env),
): VulkanDriver {
  for (const variable of ['VK_ICD_FILENAMES', 'VK_DRIVER_FILES']) {
    const files = env[variable];
    if (files) return { kind: 'preset', variable, files };
  }
  const icd = SWIFTSHADER_ICDS.find(exists);
  const loader = VULKAN_LOADERS.find(exists);
  if (icd && loader) {
    env.VK_ICD_FILENAMES = icd;
    return { kind: 'swiftshader', icd, loader };
  }
  const icds = loader ? systemIcds(icdDirs) : [];
  if (icds.length > 0) return { kind: 'system', icds };
  if (env[NO_VULKAN_ENV] === '1') return { kind: 'none' };
  const missing = [
    ...(icd ? [] : [`SwiftShader's Vulkan driver (looked for ${SWIFTSHADER_ICDS.join(', ')})`]),
    ...(loader
      ? []
      : [`the Vulkan loader libvulkan.so.1 (looked in ${VULKAN_LOADERS.join(', ')})`]),
  ];
  throw new Error(
    `the webgpu tests need a Vulkan driver and this machine lacks ${missing.join(' and ')}: ${INSTALL}. ` +
      `On a machine that cannot have one, set ${NO_VULKAN_ENV}=1 to leave webgpu out of the ` +
      `default test backends`,
  );
}
