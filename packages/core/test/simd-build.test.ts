// The committed SIMD modules (src/backend/simd/*.wasm.ts) are what their
// AssemblyScript sources compile to, and they are safe to instantiate over
// tfjs-backend-wasm's heap: the only import is the memory, and there is no
// data segment, global or start function that could write into it.
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { compileKernel, generatedSource, KERNEL_SOURCES } from '../scripts/kernel-compiler.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const sources = readdirSync(join(root, KERNEL_SOURCES)).filter((f) => f.endsWith('.ts'));

/** Section ids of a wasm binary (the spec's binary format: id byte, LEB128 size, payload). */
function sectionIds(wasm: Uint8Array): number[] {
  const ids: number[] = [];
  let at = 8; // magic + version
  while (at < wasm.length) {
    const id = wasm[at++]!;
    let size = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = wasm[at++]!;
      size |= (byte & 0x7f) << shift;
      if (byte < 0x80) break;
    }
    ids.push(id);
    at += size;
  }
  return ids;
}

/** The WebAssembly JS API used here (the project's lib settings carry no DOM types). */
const wasmApi = (
  globalThis as unknown as {
    WebAssembly: {
      Module: { new (bytes: Uint8Array): object; imports(module: object): unknown[] };
    };
  }
).WebAssembly;

const SECTION = { global: 6, start: 8, data: 11, dataCount: 12 } as const;

describe('SIMD kernel modules', () => {
  it('has the kernel sources, and helpers under assembly/lib are not modules of their own', () => {
    expect(sources).toEqual(
      expect.arrayContaining([
        'batch-matmul.ts',
        'softmax-xent.ts',
        'gelu-new.ts',
        'layer-norm.ts',
      ]),
    );
    expect(readdirSync(join(root, KERNEL_SOURCES, 'lib'))).toContain('vector-math.ts');
  });

  for (const file of sources) {
    const name = basename(file, '.ts');
    it(`${name}: the committed module is the compiled source`, async () => {
      const wasm = await compileKernel(join(root, KERNEL_SOURCES, file));
      const committed = readFileSync(join(root, 'src/backend/simd', `${name}.wasm.ts`), 'utf8');
      // On failure: node packages/core/scripts/build-kernels.mjs, then commit.
      expect(committed).toBe(generatedSource(name, wasm));

      const module = new wasmApi.Module(wasm);
      expect(wasmApi.Module.imports(module)).toEqual([
        { module: 'env', name: 'memory', kind: 'memory' },
      ]);
      const ids = sectionIds(wasm);
      for (const [section, id] of Object.entries(SECTION)) {
        expect(ids.includes(id), `${name} has a ${section} section`).toBe(false);
      }
      // instance.ts instantiates every module over the heap.
      const instance = readFileSync(join(root, 'src/backend/simd/instance.ts'), 'utf8');
      expect(instance).toContain(`from './${name}.wasm.js'`);
    }, 120_000);
  }
});
