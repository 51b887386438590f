// tfjs's pure-JavaScript backend: the slow reference every other backend is compared with.
import { CPU_TOLERANCE, defineBackend } from './descriptor.js';

export const cpuBackend = defineBackend({
  name: 'cpu',
  tfjsName: 'cpu',
  kind: 'cpu',
  syncReads: true,
  start: async () => {},
  tolerance: CPU_TOLERANCE,
  skip: {},
});
