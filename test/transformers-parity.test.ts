// Parity with Hugging Face transformers and PEFT themselves, on this machine's
// CPU: the GPU check's correctness half (test/gpu: gpu.mjs and families.mjs
// the Node.js half, reference.py the Python half), run on cpu and wasm
// against the reference stack that scripts/reference-python.sh installs
// (`pnpm test` does). transformers makes and saves every model; the project
// loads it, trains adapters with `lorafleet train`, merges with `lorafleet
// merge`; transformers and PEFT load what the project wrote. Needs the build.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { referencePython } from '@lorafleet/core/testing';

const root = join(import.meta.dirname, '..');
const out = mkdtempSync(join(tmpdir(), 'lorafleet-transformers-'));
const FAMILIES = JSON.parse(readFileSync(join(root, 'test/gpu/families.json'), 'utf8')) as Record<
  string,
  unknown
>;
const BACKENDS = ['cpu', 'wasm'] as const;
/** max |project - reference| / max |reference| (reference.py's compare). */
type Compared = { relative: number; maxAbsDiff: number; maxAbsRef: number };

function step(command: string, args: string[], timeout = 240_000): void {
  const r = spawnSync(command, args, { cwd: root, encoding: 'utf8', timeout });
  expect(r.status, `${command} ${args.join(' ')}\n${r.stdout}${r.stderr}`).toBe(0);
}
const python = (...args: string[]) => step(referencePython(), ['test/gpu/reference.py', ...args]);
const gpu = (...args: string[]) => step(process.execPath, ['test/gpu/gpu.mjs', ...args]);
const json = <T>(path: string): T => JSON.parse(readFileSync(join(out, path), 'utf8')) as T;

describe('parity with transformers and PEFT themselves (cpu and wasm)', () => {
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it("GPT-2: logits equal transformers'; LoRA and DoRA adapters from lorafleet train load in PEFT with the project's logits", () => {
    python('make-tiny', '--dir', join(out, 'tiny'));
    gpu('train-adapter', '--model', join(out, 'tiny'), '--out', join(out, 'adapter'));
    gpu(
      'train-adapter',
      '--model',
      join(out, 'tiny'),
      '--out',
      join(out, 'adapter-dora'),
      '--dora',
    );
    for (const backend of BACKENDS) {
      gpu(
        'logits',
        '--model',
        join(out, 'tiny'),
        '--ids',
        join(out, 'tiny/ids.json'),
        '--backend',
        backend,
        '--adapter',
        join(out, 'adapter/run/adapter'),
        '--dora-adapter',
        join(out, 'adapter-dora/run/adapter'),
        '--out',
        join(out, `logits-${backend}`),
      );
    }
    python('check', '--work', out);

    const parity = json<{
      logits: Record<string, Compared>;
      peft: Record<string, Compared>;
      peftDora: Record<string, Compared>;
      adapterEffect: number;
      doraEffect: number;
    }>('parity.json');
    for (const via of ['adapter', 'adapter-dora'])
      expect(json<{ via: string }>(`${via}/adapter.json`).via).toBe('lorafleet train');
    // The adapters change the logits by far more than the tolerance.
    expect(parity.adapterEffect).toBeGreaterThan(0.5);
    expect(parity.doraEffect).toBeGreaterThan(0.5);
    for (const backend of BACKENDS) {
      for (const what of ['logits', 'peft', 'peftDora'] as const)
        expect(parity[what][backend]!.relative, `${what} on ${backend}`).toBeLessThan(1e-5);
    }
  }, 300_000);

  it("every Llama-family type: logits equal transformers'; an all-linear LoRA or DoRA adapter from lorafleet train loads in PEFT with the project's logits, and lorafleet merge's folder in transformers with PEFT's, and lorafleet extract recovers the LoRA", () => {
    const dir = join(out, 'families');
    python('make-families', '--dir', dir);
    gpu('family-adapters', '--dir', dir);
    for (const backend of BACKENDS) gpu('family-logits', '--dir', dir, '--backend', backend);
    python('check-families', '--dir', dir);

    const result =
      json<Record<string, Record<string, Compared> & { adapterEffect: number }>>(
        'families/families.json',
      );
    // Every second family's adapter is DoRA's (families.mjs): peft computes it from the same files.
    const doras = Object.keys(FAMILIES).filter((name) => result[name]!.dora);
    expect(doras.length).toBe(Math.floor(Object.keys(FAMILIES).length / 2));
    for (const name of Object.keys(FAMILIES)) {
      const entry = result[name]!;
      expect(entry.adapterEffect, `${name}: the adapter's effect`).toBeGreaterThan(0.5);
      expect(entry.mergedVsPeft!.relative, `${name}: merged vs PEFT`).toBeLessThan(1e-5);
      // A LoRA adapter's merge is recovered by lorafleet extract (rank 4), which PEFT loads.
      if (!entry.dora)
        expect(entry.extractedVsPeft!.relative, `${name}: extracted vs PEFT`).toBeLessThan(1e-5);
      for (const backend of BACKENDS) {
        expect(entry[backend]!.relative, `${name} on ${backend}`).toBeLessThan(1e-5);
        expect(
          entry[`${backend}Peft`]!.relative,
          `${name} with the adapter on ${backend}`,
        ).toBeLessThan(1e-5);
      }
    }
  }, 600_000);
});
