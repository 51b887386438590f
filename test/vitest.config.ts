import { projectConfig } from '../vitest.shared.js';

export default projectConfig('cross-package', {
  testTimeout: 120_000,
  include: ['**/*.test.ts'],
  exclude: ['**/node_modules/**', 'bench/**'],
});
