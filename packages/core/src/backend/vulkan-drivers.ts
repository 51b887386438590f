// Why Dawn found no Vulkan adapter, as far as this machine's files and
// environment tell: which driver manifests (icd.d/*.json) the Vulkan loader
// sees, NVIDIA's manifest where containers put it outside the loader's search
// path, the NVIDIA container toolkit's capabilities, and the loader itself.
// Read only after Dawn found no adapter, to turn "no adapter" into what to do.
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** What a diagnosis reads: the environment, and a root under which every path lies ('/' in use; a folder in tests). */
export interface VulkanProbe {
  env: NodeJS.ProcessEnv;
  root: string;
}

/**
 * Where NVIDIA's manifest lies outside the loader's default search path:
 * GKE's driver installer and the NVIDIA container toolkit's driver root
 * mount it under /usr/local/nvidia (the GPU machine this project measures
 * on has it there too).
 */
const NVIDIA_ELSEWHERE = [
  '/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json',
  '/usr/local/nvidia/vulkan/icd.d/nvidia_icd.json',
  '/usr/local/nvidia/etc/vulkan/icd.d/nvidia_icd.json',
];

/** The Vulkan loader Dawn opens (Debian/Ubuntu package libvulkan1), where distributions put it. */
export const VULKAN_LOADERS = [
  '/usr/lib/x86_64-linux-gnu/libvulkan.so.1',
  '/usr/lib/aarch64-linux-gnu/libvulkan.so.1',
  '/usr/lib64/libvulkan.so.1',
  '/usr/lib/libvulkan.so.1',
];

/** Software drivers: they load, but lack what Dawn needs, or are not a GPU. */
const SOFTWARE_DRIVERS: Record<string, string> = {
  lvp_: 'Mesa lavapipe, a software driver that lacks features Dawn needs',
  vk_swiftshader: 'SwiftShader, a software driver: WGSL runs on the CPU (for tests, not for speed)',
};

/** The folders the Vulkan loader reads driver manifests from when no VK_DRIVER_FILES is set (Linux). */
export function loaderSearchPath(env: NodeJS.ProcessEnv): string[] {
  const home = env.HOME ?? homedir();
  const split = (value: string | undefined, fallback: string) =>
    (value || fallback).split(':').filter(Boolean);
  return [
    env.XDG_CONFIG_HOME || join(home, '.config'),
    ...split(env.XDG_CONFIG_DIRS, '/etc/xdg'),
    '/etc',
    env.XDG_DATA_HOME || join(home, '.local/share'),
    ...split(env.XDG_DATA_DIRS, '/usr/local/share:/usr/share'),
  ].map((dir) => join(dir, 'vulkan/icd.d'));
}

/** One sentence per finding, most useful first; [] when nothing stands out. */
export function diagnoseVulkan(probe: VulkanProbe = { env: process.env, root: '/' }): string[] {
  const { env } = probe;
  const at = (path: string) => join(probe.root, path);
  const findings: string[] = [];
  const named = (env.VK_DRIVER_FILES || env.VK_ICD_FILENAMES || '').split(':').filter(Boolean);
  const variable = env.VK_DRIVER_FILES ? 'VK_DRIVER_FILES' : 'VK_ICD_FILENAMES';
  const manifests = named.length > 0 ? named.filter((p) => existsSync(at(p))) : searchPath(probe);
  for (const missing of named.filter((p) => !existsSync(at(p)))) {
    findings.push(`${variable} names ${missing}, which does not exist`);
  }
  if (named.length === 0 && manifests.length === 0) {
    findings.push(
      `no Vulkan driver manifest (icd.d/*.json) in the loader's search path (${loaderSearchPath(env).join(', ')})`,
    );
  }
  const software = manifests.map(softwareDriver);
  if (manifests.length > 0 && software.every((what) => what !== undefined)) {
    const listed = manifests.map((m, i) => `${m} (${software[i]})`).join(', ');
    findings.push(`the loader sees only software drivers: ${listed}`);
  }
  const nvidiaSeen = manifests.some((m) => m.includes('nvidia'));
  const elsewhere = NVIDIA_ELSEWHERE.find((p) => existsSync(at(p)));
  if (!nvidiaSeen && elsewhere) {
    findings.push(
      `NVIDIA's Vulkan driver manifest is at ${elsewhere}, outside the loader's search path: ` +
        `set VK_DRIVER_FILES=${elsewhere}`,
    );
  }
  if (!nvidiaSeen && !elsewhere && nvidiaGpu(probe)) findings.push(missingNvidiaDriver(probe));
  if (!nvidiaGpu(probe) && !anyGpu(probe)) {
    findings.push('this process sees no GPU device (no /dev/nvidia0, no /dev/dri/renderD*)');
  }
  if (!vulkanLoader(probe)) {
    findings.push(
      'the Vulkan loader libvulkan.so.1 is in none of LD_LIBRARY_PATH and the usual library ' +
        'folders: install it (Debian/Ubuntu: apt install libvulkan1)',
    );
  }
  return findings;
}

/** What a software driver's manifest is, or undefined for any other. */
function softwareDriver(manifest: string): string | undefined {
  const name = manifest.split('/').pop()!;
  return Object.entries(SOFTWARE_DRIVERS).find(([prefix]) => name.startsWith(prefix))?.[1];
}

/** The manifests in the loader's default folders. */
function searchPath({ env, root }: VulkanProbe): string[] {
  return loaderSearchPath(env).flatMap((dir) => {
    try {
      return readdirSync(join(root, dir))
        .filter((name) => name.endsWith('.json'))
        .sort()
        .map((name) => join(dir, name));
    } catch {
      return [];
    }
  });
}

/** An NVIDIA GPU is present and this process may open it, but no NVIDIA Vulkan driver is installed. */
function missingNvidiaDriver({ env, root }: VulkanProbe): string {
  const caps = env.NVIDIA_DRIVER_CAPABILITIES;
  const inContainer =
    caps !== undefined ||
    env.NVIDIA_VISIBLE_DEVICES !== undefined ||
    env.KUBERNETES_SERVICE_HOST !== undefined ||
    existsSync(join(root, '/.dockerenv')) ||
    existsSync(join(root, '/run/.containerenv'));
  if (inContainer && !/(^|,)\s*(graphics|all)\s*(,|$)/.test(caps ?? '')) {
    return (
      `an NVIDIA GPU is here, but not its Vulkan driver: the NVIDIA container toolkit mounts it ` +
      `only with the 'graphics' capability, and NVIDIA_DRIVER_CAPABILITIES is ` +
      `${caps === undefined ? "unset (the toolkit's default leaves graphics out)" : `"${caps}"`}: ` +
      `set NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics in the container's environment`
    );
  }
  return (
    `an NVIDIA GPU is here, but no NVIDIA Vulkan driver manifest (nvidia_icd.json): install the ` +
    `driver's Vulkan part (Debian: nvidia-vulkan-icd; Ubuntu: libnvidia-gl-<driver version>), or ` +
    `set VK_DRIVER_FILES to the driver's nvidia_icd.json`
  );
}

function nvidiaGpu({ root }: VulkanProbe): boolean {
  return existsSync(join(root, '/dev/nvidia0')) || existsSync(join(root, '/dev/nvidiactl'));
}

function anyGpu({ root }: VulkanProbe): boolean {
  try {
    return readdirSync(join(root, '/dev/dri')).some((name) => name.startsWith('renderD'));
  } catch {
    return false;
  }
}

function vulkanLoader({ env, root }: VulkanProbe): boolean {
  const named = (env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
  const paths = [...named.map((dir) => join(dir, 'libvulkan.so.1')), ...VULKAN_LOADERS];
  return paths.some((path) => existsSync(join(root, path)));
}
