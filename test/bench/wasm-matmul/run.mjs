#!/usr/bin/env node
// tfjs-backend-wasm's matmul with transpose flags, stock vs the project's
// kernel wrapper (packages/core/src/backend/wasm-matmul.ts), in one run.
//   pnpm build && node test/bench/wasm-matmul/run.mjs [--repeats 10]
// Each variant runs in its own child process (kernel registration is global):
// "stock" imports @tensorflow/tfjs + the wasm backend only; "project" imports
// @lorafleet/core, which registers the wrapper. The limit to compare with is
// the same product without flags (A B), measured in the same process.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repeats = Number(process.argv[process.argv.indexOf('--repeats') + 1] || 10);
if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log('usage: node test/bench/wasm-matmul/run.mjs [--repeats N]');
  process.exit(0);
}
const results = {};
for (const variant of ['stock', 'project']) {
  const r = spawnSync(process.execPath, [join(here, 'variant.mjs'), variant, String(repeats)], {
    encoding: 'utf8',
  });
  if (r.status !== 0) {
    console.error(r.stderr);
    process.exit(1);
  }
  results[variant] = JSON.parse(r.stdout.trim().split('\n').at(-1));
}
const shapes = 'A [1024, 1024] x B [1024, 256] (B^T stored [256, 1024]; A^T stored [1024, 1024])';
console.log(`wasm matmul, ${shapes}, median of ${repeats}, GFLOP/s`);
console.log('variant   A B (limit)  A B^T (flag)  A^T B (flag)  B^T/limit  A^T/limit');
for (const [name, r] of Object.entries(results)) {
  console.log(
    `${name.padEnd(8)}  ${r.nn.toFixed(1).padStart(11)}  ${r.nt.toFixed(1).padStart(12)}  ${r.tn.toFixed(1).padStart(12)}  ${(r.nt / r.nn).toFixed(2).padStart(9)}  ${(r.tn / r.nn).toFixed(2).padStart(9)}`,
  );
}
console.log(
  `project vs stock: A B^T ${(results.project.nt / results.stock.nt).toFixed(1)}x, A^T B ${(results.project.tn / results.stock.tn).toFixed(1)}x`,
);
