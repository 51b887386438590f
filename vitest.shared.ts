import { defaultServerConditions } from 'vite';
import { defineProject } from 'vitest/config';

// Workspace packages export their TypeScript sources under the `source`
// condition, so tests run against src/ without a build step.
export function projectConfig(name: string, testTimeout = 30_000) {
  return defineProject({
    resolve: { conditions: ['source', ...defaultServerConditions] },
    ssr: { resolve: { conditions: ['source', ...defaultServerConditions] } },
    test: {
      name,
      environment: 'node',
      include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
      testTimeout,
      pool: 'forks',
    },
  });
}
