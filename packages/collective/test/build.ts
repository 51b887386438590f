// The process tests run the BUILT packages (dist/), as a worker process does.
// `pnpm test` builds first; a bare `vitest run` may not have, so build what is stale.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const packages = ['protocol', 'collective'].map((name) =>
  join(import.meta.dirname, '..', '..', name),
);

function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return latest;
}

export function ensureBuilt(): void {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  for (const pkg of packages) {
    const output = join(pkg, 'dist', 'src', 'index.js');
    if (existsSync(output) && statSync(output).mtimeMs >= newest(join(pkg, 'src'))) continue;
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: pkg, stdio: 'pipe' });
  }
}
