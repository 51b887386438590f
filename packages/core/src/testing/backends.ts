// Which compute backends the conformance suites run: env LORAFLEET_BACKENDS
// (comma-separated), else every backend of this project that needs no
// optional package: cpu, wasm and webgpu (on SwiftShader where there is no GPU).
import { type BackendName, backendDescriptor } from '../backend/descriptors/index.js';
import { NO_VULKAN_ENV, requireVulkanDriver } from './vulkan-driver.js';

/** The backends a test run covers without optional packages. */
export const DEFAULT_TEST_BACKENDS: readonly BackendName[] = ['cpu', 'wasm', 'webgpu'];

/**
 * The backends to test, checked against the descriptors. When webgpu is among
 * them, a Vulkan driver is required (requireVulkanDriver); without one and
 * with LORAFLEET_NO_VULKAN=1, webgpu is dropped from the default list only.
 */
export function testBackends(
  env: NodeJS.ProcessEnv = process.env,
  exists?: (path: string) => boolean,
): BackendName[] {
  const listed = env.LORAFLEET_BACKENDS?.trim();
  const names = listed
    ? listed.split(',').map((n) => backendDescriptor(n.trim()).name)
    : [...DEFAULT_TEST_BACKENDS];
  if (!names.includes('webgpu')) return names;
  const driver = requireVulkanDriver(env, exists);
  if (driver.kind !== 'none') return names;
  if (listed) {
    throw new Error(
      `LORAFLEET_BACKENDS names webgpu but ${NO_VULKAN_ENV}=1 says this machine has no Vulkan driver`,
    );
  }
  return names.filter((n) => n !== 'webgpu');
}
