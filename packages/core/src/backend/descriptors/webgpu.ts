// GPUs through WebGPU: Dawn (the `webgpu` npm package) + tfjs-backend-webgpu;
// ../webgpu.ts opens the adapter. Reads are asynchronous only under Node.js.
import { tf } from '../tf.js';
import { startWebGpu } from '../webgpu.js';
import { GPU_TOLERANCE, defineBackend } from './descriptor.js';

export const webgpuBackend = defineBackend({
  name: 'webgpu',
  tfjsName: 'webgpu',
  kind: 'gpu',
  syncReads: false,
  start: async ({ gpu, dawnFlags }) => {
    await startWebGpu({
      ...(gpu !== undefined ? { gpu } : {}),
      ...(dawnFlags ? { flags: dawnFlags } : {}),
    });
  },
  settle: async () => {
    const backend = tf.backend() as unknown as {
      device?: { queue: { onSubmittedWorkDone(): Promise<void> } };
    };
    await backend.device?.queue.onSubmittedWorkDone();
  },
  tolerance: GPU_TOLERANCE,
  skip: {},
});
