#!/usr/bin/env node
// Compiles the AssemblyScript SIMD kernels (assembly/*.ts) into WebAssembly and
// embeds each module, base64, in src/backend/simd/<name>.wasm.ts, which the
// package ships (so the kernels load with the JS, in Node and in bundlers,
// without a file lookup). Runs first in `pnpm build`; the generated files are
// committed, and test/simd-build.test.ts checks they match their sources.
//   node scripts/build-kernels.mjs [--check]
// --check compiles and compares without writing (exit 1 when a file is stale).
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileKernel, generatedSource, KERNEL_SOURCES } from './kernel-compiler.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log(
    'usage: node scripts/build-kernels.mjs [--check]\n' +
      `  compiles ${KERNEL_SOURCES}/*.ts (AssemblyScript) into src/backend/simd/<name>.wasm.ts\n` +
      '  --check  compare with the committed files instead of writing (exit 1 if stale)',
  );
  process.exit(0);
}
const check = process.argv.includes('--check');
const sources = readdirSync(join(root, KERNEL_SOURCES)).filter((f) => f.endsWith('.ts'));
let stale = 0;
for (const file of sources) {
  const name = basename(file, '.ts');
  const wasm = await compileKernel(join(root, KERNEL_SOURCES, file));
  const target = join(root, 'src/backend/simd', `${name}.wasm.ts`);
  const text = generatedSource(name, wasm);
  let current = '';
  try {
    current = readFileSync(target, 'utf8');
  } catch {
    // not generated yet
  }
  if (current === text) continue;
  if (check) {
    console.error(`${target} is stale: run node scripts/build-kernels.mjs and commit it`);
    stale++;
  } else {
    writeFileSync(target, text);
    console.log(`wrote ${target} (${wasm.length} bytes of wasm)`);
  }
}
process.exit(stale > 0 ? 1 : 0);
