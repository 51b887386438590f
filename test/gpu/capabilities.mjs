// The GPU check's record of what the WebGPU adapter offers (gpu.mjs adapters).

/**
 * What the adapter offers beyond WebGPU's core (for kernels not written yet:
 * subgroups, shader-f16) and the limits the kernels read, as the device's
 * default adapter reports them (the GPU check's machine has one).
 */
export async function capabilities() {
  const adapter = await globalThis.navigator.gpu.requestAdapter();
  const { limits, info } = adapter;
  const keep = [
    'maxComputeInvocationsPerWorkgroup',
    'maxComputeWorkgroupStorageSize',
    'maxStorageBufferBindingSize',
    'maxBufferSize',
    'maxStorageBuffersPerShaderStage',
    'maxComputeWorkgroupsPerDimension',
  ];
  return {
    features: [...adapter.features].sort(),
    subgroupSizes: [info?.subgroupMinSize, info?.subgroupMaxSize],
    limits: Object.fromEntries(keep.map((k) => [k, limits[k]])),
  };
}
