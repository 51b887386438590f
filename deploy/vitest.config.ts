import { projectConfig } from '../vitest.shared.js';

// Real cluster engines and networks: each file bounds its own time.
export default projectConfig('deploy', {
  testTimeout: 180_000,
  include: ['test/**/*.test.ts'],
});
