// The webgpu tests' driver lookup (src/testing/): it keeps a driver the
// environment names, else selects SwiftShader, else fails saying what to
// install, unless the machine is marked as without Vulkan.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  NO_VULKAN_ENV,
  SWIFTSHADER_ICDS,
  VULKAN_LOADERS,
  requireVulkanDriver,
  testBackends,
} from '../src/testing/index.js';

const present =
  (...paths: string[]) =>
  (p: string) =>
    paths.includes(p);
const ICD = SWIFTSHADER_ICDS[0]!;
const LOADER = VULKAN_LOADERS[0]!;

describe('requireVulkanDriver', () => {
  it('keeps a driver the environment already names (the GPU machine sets VK_DRIVER_FILES)', () => {
    const env = { VK_DRIVER_FILES: '/opt/nvidia_icd.json' };
    expect(requireVulkanDriver(env, present(ICD, LOADER))).toEqual({
      kind: 'preset',
      variable: 'VK_DRIVER_FILES',
      files: '/opt/nvidia_icd.json',
    });
    expect(env).toEqual({ VK_DRIVER_FILES: '/opt/nvidia_icd.json' });
  });

  it('selects SwiftShader through VK_ICD_FILENAMES when chromium and libvulkan1 are there', () => {
    const env: NodeJS.ProcessEnv = {};
    expect(requireVulkanDriver(env, present(ICD, LOADER))).toEqual({
      kind: 'swiftshader',
      icd: ICD,
      loader: LOADER,
    });
    expect(env.VK_ICD_FILENAMES).toBe(ICD);
  });

  it('fails and says what to install when a piece is missing', () => {
    expect(() => requireVulkanDriver({}, present(LOADER), [])).toThrow(
      /lacks SwiftShader's Vulkan driver .*install the Debian packages chromium .* and libvulkan1 .*LORAFLEET_NO_VULKAN=1/,
    );
    expect(() => requireVulkanDriver({}, present(ICD))).toThrow(
      /lacks the Vulkan loader libvulkan\.so\.1/,
    );
  });

  it("uses a driver installed in the loader's own folders when there is no SwiftShader", () => {
    const dir = mkdtempSync(join(tmpdir(), 'icd-'));
    writeFileSync(join(dir, 'lvp_icd.x86_64.json'), '{}'); // lavapipe: Dawn refuses it
    expect(() => requireVulkanDriver({}, present(LOADER), [dir])).toThrow(/lacks SwiftShader/);
    writeFileSync(join(dir, 'nvidia_icd.json'), '{}');
    expect(requireVulkanDriver({}, present(LOADER), [dir])).toEqual({
      kind: 'system',
      icds: [join(dir, 'nvidia_icd.json')],
    });
    rmSync(dir, { recursive: true });
  });

  it('reports none on a machine marked as without Vulkan', () => {
    expect(requireVulkanDriver({ [NO_VULKAN_ENV]: '1' }, present())).toEqual({ kind: 'none' });
  });
});

describe('testBackends', () => {
  it('defaults to cpu, wasm and webgpu, and drops webgpu only on a machine marked without Vulkan', () => {
    expect(testBackends({ VK_ICD_FILENAMES: ICD })).toEqual(['cpu', 'wasm', 'webgpu']);
    expect(testBackends({ LORAFLEET_BACKENDS: 'wasm' })).toEqual(['wasm']);
    expect(testBackends({ [NO_VULKAN_ENV]: '1' }, present())).toEqual(['cpu', 'wasm']);
    expect(() => testBackends({}, present())).toThrow(/the webgpu tests need a Vulkan driver/);
  });

  it('refuses unknown names and webgpu asked for on a machine marked without Vulkan', () => {
    expect(() => testBackends({ LORAFLEET_BACKENDS: 'wasm,cuda' })).toThrow(
      /unknown compute backend "cuda"/,
    );
    expect(() =>
      testBackends({ LORAFLEET_BACKENDS: 'webgpu', [NO_VULKAN_ENV]: '1' }, present()),
    ).toThrow(/names webgpu but LORAFLEET_NO_VULKAN=1/);
  });
});
