// The frame of every webgpu kernel test file: the backend opened once on
// real WebGPU execution (SwiftShader where there is no GPU;
// scripts/test-machine.sh installs it), no WebGPU error left at the end, and
// the device released.
import { afterAll, beforeAll, expect } from 'vitest';
import { releaseWebGpu, useBackend, webGpuErrors } from '../src/index.js';
import { requireVulkanDriver } from '../src/testing/index.js';

/** Registers the file's beforeAll/afterAll; `cleanup` runs before the device is released. */
export function webGpuSuite(cleanup?: () => void): void {
  beforeAll(async () => {
    requireVulkanDriver();
    await useBackend('webgpu');
  }, 60_000);

  afterAll(async () => {
    expect(webGpuErrors()).toEqual([]);
    cleanup?.();
    await useBackend('cpu');
    releaseWebGpu();
  });
}
