// Test support shared by the packages' suites (`@lorafleet/core/testing`):
// which backends to run, the Vulkan driver the webgpu tests need,
// identical GPUs made of SwiftShader copies for the `--gpus` tests, and the
// Python reference stack the parity tests compare with.
export { DEFAULT_TEST_BACKENDS, testBackends } from './backends.js';
export {
  NO_VULKAN_ENV,
  SWIFTSHADER_ICDS,
  VULKAN_LOADERS,
  type VulkanDriver,
  requireVulkanDriver,
} from './vulkan-driver.js';
export {
  SWIFTSHADER_NAME,
  driversUsed,
  fakePciLayer,
  identicalSwiftShaders,
  requireDeviceLayer,
} from './identical-gpus.js';
export { referenceJson, referencePython } from './reference-python.js';
