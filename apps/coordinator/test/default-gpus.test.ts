import { describe, expect, it } from 'vitest';
import { spreadOverGpus } from '../src/distributed/default-gpus.js';

const adapters = (...names: string[]) =>
  names.map((name, index) => ({ index, backend: 'vulkan', name }));

describe('spreadOverGpus: the GPU of each spawned worker without --gpus', () => {
  it('gives each worker the next GPU, in turn when there are more workers than GPUs', () => {
    const eight = adapters(...Array<string>(8).fill('NVIDIA H200'));
    expect(spreadOverGpus(eight, 8)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(spreadOverGpus(eight.slice(0, 2), 3)).toEqual([0, 1, 0]);
  });

  it('leaves software adapters out where there is a GPU', () => {
    const list = adapters('llvmpipe (LLVM 15.0.7, 256 bits)', 'NVIDIA H200', 'NVIDIA H200');
    expect(spreadOverGpus(list, 2)).toEqual([1, 2]);
    expect(spreadOverGpus(adapters('SwiftShader Device (Subzero)', 'NVIDIA L4'), 2)).toEqual([]);
  });

  it('spreads over software adapters only where there is nothing else (two SwiftShaders in tests)', () => {
    const twins = adapters('SwiftShader Device (Subzero)', 'SwiftShader Device (Subzero)');
    expect(spreadOverGpus(twins, 2)).toEqual([0, 1]);
  });

  it('spreads nothing over fewer than two adapters: every worker takes the default', () => {
    expect(spreadOverGpus(adapters('NVIDIA H200'), 4)).toEqual([]);
    expect(spreadOverGpus([], 4)).toEqual([]);
  });
});
