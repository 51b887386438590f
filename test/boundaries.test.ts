// DESIGN.md's dependency direction, checked against what each workspace
// package declares and what its sources import. The linter enforces the same
// per file (eslint.config.js); this test also catches package.json drift.
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');

/** Which workspace packages and externals each package may depend on. */
const allowed: Record<string, { workspace: string[]; forbiddenExternal: RegExp[] }> = {
  '@lorafleet/protocol': { workspace: [], forbiddenExternal: [/^@tensorflow\//] },
  '@lorafleet/options': { workspace: [], forbiddenExternal: [/^zeromq$/, /^@tensorflow\//] },
  '@lorafleet/core': { workspace: [], forbiddenExternal: [/^zeromq$/] },
  '@lorafleet/models': { workspace: ['@lorafleet/core'], forbiddenExternal: [/^zeromq$/] },
  '@lorafleet/data': { workspace: [], forbiddenExternal: [/^zeromq$/, /^@tensorflow\//] },
  '@lorafleet/launch': { workspace: [], forbiddenExternal: [/^zeromq$/, /^@tensorflow\//] },
  '@lorafleet/collective': {
    workspace: ['@lorafleet/protocol'],
    forbiddenExternal: [/^@tensorflow\//],
  },
  '@lorafleet/worker': {
    workspace: [
      '@lorafleet/protocol',
      '@lorafleet/collective',
      '@lorafleet/core',
      '@lorafleet/models',
      '@lorafleet/data',
    ],
    forbiddenExternal: [],
  },
  // Types only: nothing to depend on at all.
  '@lorafleet/run-events': { workspace: [], forbiddenExternal: [/./] },
  // The browser app talks HTTP; it shares the event types, never the coordinator's code.
  '@lorafleet/dashboard': {
    workspace: ['@lorafleet/run-events'],
    forbiddenExternal: [/^zeromq$/, /^@tensorflow\//],
  },
};

interface Workspace {
  dir: string;
  name: string;
  deps: string[];
}

function workspaces(): Workspace[] {
  const out: Workspace[] = [];
  for (const group of ['packages', 'apps']) {
    const base = join(root, group);
    if (!existsSync(base)) continue;
    for (const entry of readdirSync(base)) {
      const file = join(base, entry, 'package.json');
      if (!existsSync(file)) continue;
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as {
        name: string;
        dependencies?: Record<string, string>;
        devDependencies?: Record<string, string>;
      };
      out.push({
        dir: join(base, entry),
        name: pkg.name,
        deps: Object.keys({ ...pkg.dependencies, ...pkg.devDependencies }),
      });
    }
  }
  return out;
}

function sourceFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    if (statSync(path).isDirectory())
      return entry === 'node_modules' || entry === 'dist' ? [] : sourceFiles(path);
    return /\.(ts|tsx|mts)$/.test(entry) ? [path] : [];
  });
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const found = [...text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"]([^'"]+)['"]/g)];
  return found
    .map((m) => m[1]!)
    .filter((spec) => !spec.startsWith('.') && !spec.startsWith('node:'));
}

function violations(ws: Workspace): string[] {
  const rule = allowed[ws.name];
  if (!rule)
    return ws.name.startsWith('@lorafleet/') && ws.dir.includes('/packages/')
      ? [`${ws.name} has no rule here`]
      : [];
  const problems: string[] = [];
  const check = (spec: string, where: string) => {
    if (
      spec.startsWith('@lorafleet/') &&
      !rule.workspace.includes(spec.split('/').slice(0, 2).join('/'))
    ) {
      problems.push(`${where}: ${ws.name} must not depend on ${spec}`);
    }
    if (rule.forbiddenExternal.some((re) => re.test(spec)))
      problems.push(`${where}: ${ws.name} must not depend on ${spec}`);
  };
  for (const dep of ws.deps) check(dep, relative(root, join(ws.dir, 'package.json')));
  for (const file of sourceFiles(join(ws.dir, 'src'))) {
    for (const spec of importsOf(file)) check(spec, relative(root, file));
  }
  return problems;
}

describe('package boundaries (DESIGN.md)', () => {
  const all = workspaces();

  it('finds the workspace packages', () => {
    expect(all.map((w) => w.name)).toContain('@lorafleet/core');
  });

  for (const ws of all) {
    it(`${ws.name} depends only in the allowed direction`, () => {
      expect(violations(ws)).toEqual([]);
    });
  }

  it('flags a forbidden import (the check itself works)', () => {
    const fake: Workspace = {
      dir: join(root, 'packages', 'core'),
      name: '@lorafleet/core',
      deps: ['zeromq'],
    };
    expect(violations(fake)).toEqual([
      'packages/core/package.json: @lorafleet/core must not depend on zeromq',
    ]);
  });
});
