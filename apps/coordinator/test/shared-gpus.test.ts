import { describe, expect, it } from 'vitest';
import type { Hello } from '@lorafleet/protocol';
import { sharedGpuWarnings } from '../src/distributed/shared-gpus.js';

const member = (name: string, host: string, device: string) => ({
  name,
  hello: { host, device } as Hello,
});

describe('sharedGpuWarnings', () => {
  it('names the workers of one host that compute on one GPU, once per GPU', () => {
    const warnings = sharedGpuWarnings([
      member('worker 0', 'node-a', 'gpu: NVIDIA H200'),
      member('worker 1', 'node-a', 'gpu: NVIDIA H200'),
      member('worker 2', 'node-a', 'gpu: NVIDIA H200'),
      member('worker 3', 'node-b', 'gpu 1: NVIDIA H200 (2nd of 8 so named, PCI 0000:19:00.0)'),
      member('worker 4', 'node-b', 'gpu 1: NVIDIA H200 (2nd of 8 so named, PCI 0000:19:00.0)'),
    ]);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(
      /^worker 0, worker 1, worker 2 on node-a all compute on "gpu: NVIDIA H200": they share that GPU/,
    );
    expect(warnings[0]).toContain('--gpus 0,1,...');
    expect(warnings[1]).toMatch(/^worker 3, worker 4 on node-b all compute on "gpu 1: NVIDIA/);
  });

  it('says nothing of workers on their own GPUs, on other hosts, on the CPU or not yet heard', () => {
    expect(
      sharedGpuWarnings([
        member('worker 0', 'node-a', 'gpu 0: NVIDIA H200 (1st of 2 so named)'),
        member('worker 1', 'node-a', 'gpu 1: NVIDIA H200 (2nd of 2 so named)'),
        member('worker 2', 'node-b', 'gpu 0: NVIDIA H200 (1st of 2 so named)'),
        member('worker 3', 'node-a', 'cpu'),
        member('worker 4', 'node-a', 'cpu'),
        { name: 'worker 5' },
      ]),
    ).toEqual([]);
  });
});
