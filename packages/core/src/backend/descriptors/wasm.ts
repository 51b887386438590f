// The default backend: tfjs's WebAssembly kernels (SIMD, one thread) on any
// machine; tf.ts registers it and the kernels it lacks.
import { CPU_TOLERANCE, defineBackend } from './descriptor.js';

export const wasmBackend = defineBackend({
  name: 'wasm',
  tfjsName: 'wasm',
  kind: 'cpu',
  syncReads: true,
  start: async () => {},
  tolerance: CPU_TOLERANCE,
  skip: {},
});
