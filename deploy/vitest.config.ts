import { projectConfig } from '../vitest.shared.js';

// Real cluster engines and networks: each file bounds its own time. One file
// at a time: each starts several training processes, and together they would
// starve one another's heartbeats on a small machine.
const project = projectConfig('deploy', {
  testTimeout: 180_000,
  include: ['test/**/*.test.ts'],
});

export default { ...project, test: { ...project.test, fileParallelism: false } };
