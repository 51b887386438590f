// Test support shared by the packages' suites (`@lorafleet/core/testing`):
// which backends to run, and the Vulkan driver the webgpu tests need.
export { DEFAULT_TEST_BACKENDS, testBackends } from './backends.js';
export {
  NO_VULKAN_ENV,
  SWIFTSHADER_ICDS,
  VULKAN_LOADERS,
  type VulkanDriver,
  requireVulkanDriver,
} from './vulkan-driver.js';
