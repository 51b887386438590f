import { defineConfig } from 'vitest/config';

// One root run over every project, so CI ends with a single summary line.
export default defineConfig({
  test: {
    projects: ['packages/*', 'apps/*', 'test', 'deploy'],
  },
});
