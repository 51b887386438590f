// @tensorflow/tfjs-node: libtensorflow on the CPU, when the user installed it (../tfjs-node.ts).
import { loadTfjsNode } from '../tfjs-node.js';
import { CPU_TOLERANCE, defineBackend } from './descriptor.js';

export const tensorflowBackend = defineBackend({
  name: 'tensorflow',
  tfjsName: 'tensorflow',
  kind: 'cpu',
  syncReads: true,
  start: () => loadTfjsNode('tensorflow'),
  tolerance: CPU_TOLERANCE,
  skip: {},
});
