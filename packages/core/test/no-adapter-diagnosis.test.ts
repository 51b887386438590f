// What "no WebGPU adapter" says about the machine (src/backend/vulkan-drivers.ts):
// each kind of machine built as real files under a temporary root, the way
// the Vulkan loader, the NVIDIA container toolkit and GKE lay them out.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { diagnoseVulkan, loaderSearchPath } from '../src/backend/vulkan-drivers.js';
import { noAdapterError } from '../src/backend/webgpu-dawn.js';

const LOADER = '/usr/lib/x86_64-linux-gnu/libvulkan.so.1';
const NVIDIA_ICD = '/usr/share/vulkan/icd.d/nvidia_icd.json';
const GKE_ICD = '/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json';
const HOME = { HOME: '/home/user' };

let roots: string[] = [];
afterEach(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
  roots = [];
});

/** A machine with these files (contents do not matter to the diagnosis). */
function machine(...files: string[]): string {
  const root = mkdtempSync(join(tmpdir(), 'lorafleet-vulkan-'));
  roots.push(root);
  for (const file of files) {
    mkdirSync(dirname(join(root, file)), { recursive: true });
    writeFileSync(join(root, file), '{}');
  }
  return root;
}

describe('diagnoseVulkan', () => {
  it('finds nothing to say on a machine that has an NVIDIA GPU, its driver and the loader', () => {
    const root = machine('/dev/nvidia0', LOADER, NVIDIA_ICD);
    expect(diagnoseVulkan({ env: HOME, root })).toEqual([]);
  });

  it('says there is no driver, no GPU and no loader on a bare machine', () => {
    const findings = diagnoseVulkan({ env: HOME, root: machine() });
    expect(findings).toHaveLength(3);
    expect(findings[0]).toMatch(
      /^no Vulkan driver manifest \(icd\.d\/\*\.json\) in the loader's search path \(\/home\/user\/\.config\/vulkan\/icd\.d, \/etc\/xdg\/vulkan\/icd\.d, \/etc\/vulkan\/icd\.d, .*\/usr\/share\/vulkan\/icd\.d\)$/,
    );
    expect(findings[1]).toBe(
      'this process sees no GPU device (no /dev/nvidia0, no /dev/dri/renderD*)',
    );
    expect(findings[2]).toMatch(/libvulkan\.so\.1 is in none of .*apt install libvulkan1/);
  });

  it("names the toolkit's missing 'graphics' capability in an NVIDIA container", () => {
    const root = machine('/dev/nvidia0', LOADER);
    const env = {
      ...HOME,
      NVIDIA_VISIBLE_DEVICES: 'all',
      NVIDIA_DRIVER_CAPABILITIES: 'compute,utility',
    };
    expect(diagnoseVulkan({ env, root })).toEqual([
      expect.stringMatching(/^no Vulkan driver manifest/),
      expect.stringContaining(
        'NVIDIA_DRIVER_CAPABILITIES is "compute,utility": set NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics',
      ),
    ]);
    // Unset, under Kubernetes: the toolkit's default leaves graphics out too.
    const k8s = { ...HOME, KUBERNETES_SERVICE_HOST: '10.0.0.1' };
    expect(diagnoseVulkan({ env: k8s, root }).join('\n')).toContain(
      "NVIDIA_DRIVER_CAPABILITIES is unset (the toolkit's default leaves graphics out)",
    );
    // With graphics granted, or outside a container: the driver itself is missing.
    for (const env of [{ ...HOME, NVIDIA_DRIVER_CAPABILITIES: 'compute, graphics' }, HOME]) {
      const said = diagnoseVulkan({ env, root }).join('\n');
      expect(said).not.toContain('NVIDIA_DRIVER_CAPABILITIES');
      expect(said).toContain("install the driver's Vulkan part (Debian: nvidia-vulkan-icd");
    }
  });

  it("points VK_DRIVER_FILES at NVIDIA's manifest where GKE puts it", () => {
    const root = machine('/dev/nvidia0', LOADER, GKE_ICD);
    const env = { ...HOME, NVIDIA_DRIVER_CAPABILITIES: 'all' };
    expect(diagnoseVulkan({ env, root })).toEqual([
      expect.stringMatching(/^no Vulkan driver manifest/),
      `NVIDIA's Vulkan driver manifest is at ${GKE_ICD}, outside the loader's search path: ` +
        `set VK_DRIVER_FILES=${GKE_ICD}`,
    ]);
    // Once set, nothing is left to say.
    expect(diagnoseVulkan({ env: { ...env, VK_DRIVER_FILES: GKE_ICD }, root })).toEqual([]);
  });

  it('names a VK_DRIVER_FILES or VK_ICD_FILENAMES that does not exist', () => {
    const root = machine('/dev/nvidia0', LOADER, NVIDIA_ICD);
    for (const variable of ['VK_DRIVER_FILES', 'VK_ICD_FILENAMES']) {
      const env = { ...HOME, [variable]: `${NVIDIA_ICD}:/opt/gone.json` };
      expect(diagnoseVulkan({ env, root })).toEqual([
        `${variable} names /opt/gone.json, which does not exist`,
      ]);
    }
  });

  it('says when the loader sees only software drivers', () => {
    const lavapipe = '/usr/share/vulkan/icd.d/lvp_icd.x86_64.json';
    const root = machine('/dev/dri/renderD128', LOADER, lavapipe);
    expect(diagnoseVulkan({ env: HOME, root })).toEqual([
      `the loader sees only software drivers: ${lavapipe} (Mesa lavapipe, a software driver that lacks features Dawn needs)`,
    ]);
    // Beside a GPU vendor's driver, lavapipe is no finding.
    const both = machine(
      '/dev/dri/renderD128',
      LOADER,
      lavapipe,
      '/etc/vulkan/icd.d/radeon_icd.json',
    );
    expect(diagnoseVulkan({ env: HOME, root: both })).toEqual([]);
  });

  it('follows the XDG variables and LD_LIBRARY_PATH as the loader does', () => {
    const root = machine(
      '/dev/nvidia0',
      '/opt/vk/lib/libvulkan.so.1',
      '/opt/share/vulkan/icd.d/nvidia_icd.json',
    );
    const env = { ...HOME, XDG_DATA_DIRS: '/opt/share', LD_LIBRARY_PATH: '/opt/vk/lib' };
    expect(loaderSearchPath(env)).toContain('/opt/share/vulkan/icd.d');
    expect(diagnoseVulkan({ env, root })).toEqual([]);
    // Without them: no manifest, so no NVIDIA driver either, and no loader.
    expect(diagnoseVulkan({ env: HOME, root })).toHaveLength(3);
  });
});

describe('noAdapterError', () => {
  it('carries the findings between the failure and the general advice', () => {
    const root = machine('/dev/nvidia0', LOADER);
    const env = { ...HOME, NVIDIA_VISIBLE_DEVICES: '0', NVIDIA_DRIVER_CAPABILITIES: 'utility' };
    const { message } = noAdapterError([], { env, root });
    const vulkan = process.platform === 'linux';
    expect(message).toMatch(
      vulkan
        ? /^no WebGPU adapter found \(Dawn, its default backend\)\. What this machine shows: no Vulkan driver manifest .*; an NVIDIA GPU is here, but not its Vulkan driver: .*graphics in the container's environment\. On Linux Dawn drives the GPU through Vulkan: .* use --backend wasm$/
        : /^no WebGPU adapter found \(Dawn, its default backend\)\. On Linux/,
    );
  });

  it('diagnoses only when Dawn looked through Vulkan', () => {
    const root = machine();
    expect(noAdapterError(['backend=null'], { env: HOME, root }).message).toMatch(
      /^no WebGPU adapter found \(Dawn, null backend\)\. On Linux/,
    );
    const env = { ...HOME, DAWNNODE_BACKEND: 'opengles' };
    expect(noAdapterError([], { env, root }).message).toMatch(
      /\(Dawn, opengles backend\)\. On Linux/,
    );
  });
});
