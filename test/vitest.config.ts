import { projectConfig } from '../vitest.shared.js';

export default defineTestProject();

function defineTestProject() {
  const config = projectConfig('cross-package', 120_000);
  return {
    ...config,
    test: { ...config.test, include: ['**/*.test.ts'], exclude: ['node_modules/**', 'bench/**'] },
  };
}
