// Which adapter a webgpu worker opens for `--gpu I` (webgpu-dawn.ts), and the
// device-select layer's variables and report (vulkan-device-layer.ts): pure
// functions over Dawn's adapter list, so these run without an adapter. The
// layer itself runs in apps/coordinator/test/identical-gpus.test.ts.
import { describe, expect, it } from 'vitest';
import { deviceLayerEnv, parseDeviceLayerReport } from '../src/backend/vulkan-device-layer.js';
import { chooseAdapter, describeAdapters, parseAdapterList } from '../src/backend/webgpu-dawn.js';

describe('webgpu adapter choice', () => {
  it('parses the adapter list of a failed adapter= match', () => {
    const message =
      "no adapter with backend 'vulkan' and name 'x' found\nAvailable adapters:\n" +
      " * backend: 'vulkan', name: 'NVIDIA H100 80GB HBM3'\n" +
      " * backend: 'vulkan', name: 'llvmpipe (LLVM 15.0.6, 256 bits)'";
    expect(parseAdapterList(message)).toEqual([
      { index: 0, backend: 'vulkan', name: 'NVIDIA H100 80GB HBM3' },
      { index: 1, backend: 'vulkan', name: 'llvmpipe (LLVM 15.0.6, 256 bits)' },
    ]);
  });

  it('selects by name, and identical GPUs (or a name another contains) through the device-select layer', () => {
    const list = [
      { index: 0, backend: 'vulkan', name: 'NVIDIA RTX A6000' },
      { index: 1, backend: 'vulkan', name: 'NVIDIA H100 80GB HBM3' },
      { index: 2, backend: 'vulkan', name: 'NVIDIA H100 80GB HBM3' },
      { index: 3, backend: 'vulkan', name: 'NVIDIA H100' },
      { index: 4, backend: 'vulkan', name: 'NVIDIA H100 80GB HBM3' },
    ];
    const layer = '/opt/layer';
    expect(chooseAdapter(list, 0, layer)).toEqual({
      kind: 'flag',
      flag: 'adapter=NVIDIA RTX A6000',
    });
    // Each of the identical three is the k-th so named; "NVIDIA H100" is contained in them.
    const through = (ordinal: number, name: string) => ({
      kind: 'layer',
      dir: layer,
      choice: { ordinal, name },
    });
    expect(chooseAdapter(list, 1, layer)).toEqual(through(0, 'NVIDIA H100 80GB HBM3'));
    expect(chooseAdapter(list, 2, layer)).toEqual(through(1, 'NVIDIA H100 80GB HBM3'));
    expect(chooseAdapter(list, 4, layer)).toEqual(through(2, 'NVIDIA H100 80GB HBM3'));
    expect(chooseAdapter(list, 3, layer)).toEqual(through(0, 'NVIDIA H100'));
    expect(() => chooseAdapter(list, 5, layer)).toThrow(
      /there are 5 WebGPU adapter\(s\):\n {2}0: NVIDIA RTX A6000/,
    );
    expect(() => chooseAdapter([], 0, layer)).toThrow(/there is no WebGPU adapter/);
  });

  it('says how to build the layer when identical GPUs need it, and that it serves Vulkan only', () => {
    const twins = [
      { index: 0, backend: 'vulkan', name: 'NVIDIA H200' },
      { index: 1, backend: 'vulkan', name: 'NVIDIA H200' },
    ];
    expect(() => chooseAdapter(twins, 1, undefined)).toThrow(
      /adapter 0 \("NVIDIA H200"\) matches "NVIDIA H200" too[\s\S]*VK_LAYER_LORAFLEET_device_select\) is not built: [\s\S]*libvulkan-dev[\s\S]*build-vulkan-layer\.mjs[\s\S]*NVIDIA_VISIBLE_DEVICES[\s\S]*tensorflow-gpu/,
    );
    const metal = twins.map((a) => ({ ...a, backend: 'metal' }));
    expect(() => chooseAdapter(metal, 0, '/opt/layer')).toThrow(
      /that layer is Vulkan's, and this adapter is Dawn's metal backend/,
    );
    // A unique name needs no layer, built or not.
    expect(chooseAdapter(twins.slice(0, 1), 0, undefined)).toEqual({
      kind: 'flag',
      flag: 'adapter=NVIDIA H200',
    });
  });

  it('lists adapters with the index --gpu takes, and says how shared names are opened', () => {
    const twins = ['NVIDIA H200', 'NVIDIA H200', 'NVIDIA L4'].map((name, index) => ({
      index,
      backend: 'vulkan',
      name,
    }));
    const built = describeAdapters(twins, '/opt/layer');
    expect(built).toContain(
      '  0: NVIDIA H200 (vulkan)\n  1: NVIDIA H200 (vulkan)\n  2: NVIDIA L4 (vulkan)',
    );
    expect(built).toMatch(
      /Adapters 0, 1 share a name.*VK_LAYER_LORAFLEET_device_select \(\/opt\/layer\)/,
    );
    expect(describeAdapters(twins, undefined)).toMatch(/Adapters 0, 1 .*is not built: build it/);
    const distinct = twins.slice(1).map((a, index) => ({ ...a, index }));
    expect(describeAdapters(distinct, undefined)).not.toMatch(/share a name/);
  });

  it("reads the layer's report and sets the loader's variables once, keeping the user's", () => {
    expect(parseDeviceLayerReport('3 8 0000:c6:00.0 NVIDIA H200\n')).toEqual({
      ordinal: 3,
      count: 8,
      pci: '0000:c6:00.0',
      name: 'NVIDIA H200',
    });
    expect(parseDeviceLayerReport('1 2 - SwiftShader Device (Subzero)\n')).toEqual({
      ordinal: 1,
      count: 2,
      pci: null,
      name: 'SwiftShader Device (Subzero)',
    });
    expect(parseDeviceLayerReport('- 2 - NVIDIA H200\n')?.ordinal).toBeNull();
    expect(parseDeviceLayerReport('garbage')).toBeUndefined();
    const choice = { ordinal: 1, name: 'NVIDIA H200' };
    const env = {
      VK_LAYER_PATH: '/usr/local/layers',
      VK_INSTANCE_LAYERS: 'VK_LAYER_KHRONOS_validation',
    };
    const set = deviceLayerEnv('/opt/layer', choice, '/tmp/r.txt', env);
    expect(set).toEqual({
      VK_LAYER_PATH: '/opt/layer:/usr/local/layers',
      VK_INSTANCE_LAYERS: 'VK_LAYER_LORAFLEET_device_select:VK_LAYER_KHRONOS_validation',
      LORAFLEET_VK_DEVICE: '1:NVIDIA H200',
      LORAFLEET_VK_DEVICE_REPORT: '/tmp/r.txt',
    });
    // Applied twice (a second backend start), nothing is listed twice.
    expect(deviceLayerEnv('/opt/layer', choice, '/tmp/r.txt', { ...env, ...set })).toEqual(set);
  });
});
