// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// DESIGN.md's dependency direction, enforced per package: each entry lists the
// imports a package must never make. test/boundaries.test.ts checks the same
// rule against package.json dependencies.
const forbidden = {
  'packages/core': ['zeromq', '@lorafleet/*'],
  'packages/models': [
    'zeromq',
    '@lorafleet/data',
    '@lorafleet/protocol',
    '@lorafleet/collective',
    '@lorafleet/worker',
  ],
  'packages/data': ['zeromq', '@tensorflow/*', '@lorafleet/*'],
  'packages/protocol': ['@tensorflow/*', '@lorafleet/*'],
  'packages/collective': [
    '@tensorflow/*',
    '@lorafleet/core',
    '@lorafleet/models',
    '@lorafleet/data',
    '@lorafleet/worker',
  ],
  'packages/worker': ['@lorafleet/coordinator'],
  'packages/options': ['zeromq', '@tensorflow/*', '@lorafleet/*'],
  // Types only: the one contract of the coordinator and the dashboard.
  'packages/run-events': ['@lorafleet/*', '@tensorflow/*', 'zeromq', 'node:*'],
  // A browser app: it talks to the coordinator over HTTP and shares only the event types.
  'apps/dashboard': [
    '@lorafleet/core',
    '@lorafleet/models',
    '@lorafleet/data',
    '@lorafleet/protocol',
    '@lorafleet/collective',
    '@lorafleet/worker',
    '@lorafleet/coordinator',
    '@tensorflow/*',
    'zeromq',
    'node:*',
  ],
  'packages/launch': ['zeromq', '@tensorflow/*', '@lorafleet/*'],
};

export default tseslint.config(
  {
    ignores: [
      '**/dist/**',
      '**/node_modules/**',
      '**/.turbo/**',
      'runs/**',
      '.gpu/**',
      '.venv-reference/**',
      'packages/protocol/src/generated/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        performance: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'off',
    },
  },
  ...Object.entries(forbidden).map(([dir, patterns]) => ({
    files: [`${dir}/**/*.ts`],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: patterns.map((group) => ({
            group: [group],
            message: `${dir} must not import ${group} (see ../shared/DESIGN.md, "Packages and the direction of dependencies").`,
          })),
        },
      ],
    },
  })),
);
