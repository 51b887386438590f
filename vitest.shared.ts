import { defaultServerConditions } from 'vite';
import { defineProject } from 'vitest/config';

export interface ProjectOptions {
  testTimeout?: number;
  include?: string[];
  exclude?: string[];
}

// Workspace packages export their TypeScript sources under the `source`
// condition, so tests run against src/ without a build step.
export function projectConfig(name: string, options: ProjectOptions = {}) {
  const conditions = ['source', ...defaultServerConditions];
  return defineProject({
    resolve: { conditions },
    ssr: { resolve: { conditions } },
    test: {
      name,
      environment: 'node',
      include: options.include ?? ['test/**/*.test.ts', 'src/**/*.test.ts'],
      exclude: options.exclude ?? ['**/node_modules/**'],
      testTimeout: options.testTimeout ?? 30_000,
      pool: 'forks',
    },
  });
}
