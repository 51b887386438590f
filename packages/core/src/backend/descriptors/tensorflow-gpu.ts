// @tensorflow/tfjs-node-gpu: libtensorflow on CUDA 11.2, when the user
// installed it (../tfjs-node.ts); it registers tfjs's 'tensorflow' backend too.
import { loadTfjsNode } from '../tfjs-node.js';
import { GPU_TOLERANCE, defineBackend } from './descriptor.js';

export const tensorflowGpuBackend = defineBackend({
  name: 'tensorflow-gpu',
  tfjsName: 'tensorflow',
  kind: 'gpu',
  syncReads: true,
  start: ({ gpu }) => loadTfjsNode('tensorflow-gpu', gpu),
  tolerance: GPU_TOLERANCE,
  skip: {},
});
