// The GPU check (test/gpu/run.sh) has to work the first time it meets a GPU:
// its smoke run here goes through every Node.js phase on wasm with tiny
// shapes (the built packages, the `lorafleet train` CLI, adapter and logits
// files in the format reference.py reads, the Llama-family folders' logits,
// the report), and parses the Python half. Needs the build (`pnpm build`), as the GPU machine does.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { testBackends } from '@lorafleet/core/testing';

const root = join(import.meta.dirname, '..');
// The Vulkan driver the webgpu tests use (SwiftShader, through VK_ICD_FILENAMES, which
// run.sh inherits): the adapters and device-layer phases then meet an adapter, as on the
// GPU machine. Only a machine marked LORAFLEET_NO_VULKAN=1 runs them without one.
testBackends();
const out = mkdtempSync(join(tmpdir(), 'lorafleet-gpu-smoke-'));
const json = (path: string) => JSON.parse(readFileSync(join(out, path), 'utf8'));

describe('test/gpu/run.sh --smoke', () => {
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('runs every Node.js phase on wasm and writes the report', () => {
    for (const built of ['packages/core/dist/src/index.js', 'packages/models/dist/src/index.js'])
      expect(existsSync(join(root, built)), `${built}: run the build first`).toBe(true);
    // The device-layer phase loads the device-select layer: built now if `pnpm build`
    // ran before the compiler and headers were installed (scripts/test-machine.sh).
    const build = spawnSync(process.execPath, ['packages/core/scripts/build-vulkan-layer.mjs'], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(build.status, build.stdout + build.stderr).toBe(0);
    const r = spawnSync('bash', ['test/gpu/run.sh', '--smoke', out], {
      cwd: root,
      encoding: 'utf8',
      timeout: 90_000,
      env: { ...process.env, LORAFLEET_DAWN_FLAGS: '' },
    });
    expect(r.status, r.stdout + r.stderr).toBe(0);

    const phases = readFileSync(join(out, 'work/phases.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { phase: string; rc: number });
    expect(phases.map((p) => p.phase)).toEqual([
      'adapters',
      'device-layer',
      'tiny-model',
      'py-compile',
      'train-adapter',
      'train-adapter-dora',
      'logits-wasm',
      'family-models',
      'family-adapters',
      'family-logits-wasm',
      'grads',
      'throughput-project',
      'profile',
      'report',
    ]);
    expect(
      phases.filter((p) => p.rc !== 0),
      r.stdout,
    ).toEqual([]);

    // No adapter on this machine: the phase records the error that says why.
    const adapters = json('work/adapters.json');
    if (adapters.adapters.length === 0) expect(adapters.errors.start).toMatch(/no WebGPU adapter/);
    else {
      // An adapter (SwiftShader's, with VK_ICD_FILENAMES): what it offers, in the report too.
      expect(adapters.capabilities.limits.maxComputeInvocationsPerWorkgroup).toBeGreaterThan(0);
      expect(json('gpu-report.json').summary.join('\n')).toMatch(/features: .*subgroup sizes/);
    }

    // The device-select layer, loaded by hand on this machine's driver (SwiftShader's when
    // VK_ICD_FILENAMES names it): Dawn then lists only adapter 0, which computes.
    const layer = json('work/device-layer.json');
    if (layer.before.length > 0) {
      expect(layer.ok, JSON.stringify(layer)).toBe(true);
      expect(json('gpu-report.json').summary.join('\n')).toMatch(/device layer: ok \(gpu: /);
    }

    // The files reference.py reads: PEFT adapter, float32 logits with their shape.
    const adapter = json('work/adapter/adapter.json');
    expect(existsSync(join(adapter.adapterDir, 'adapter_model.safetensors'))).toBe(true);
    const meta = json('work/logits-wasm/meta.json');
    expect(meta.shape).toEqual([2, 24, 257]);
    expect(statSync(join(out, 'work/logits-wasm/adapted.f32')).size).toBe(2 * 24 * 257 * 4);
    expect(meta.adapterEffect).toBeGreaterThan(1e-2); // the adapter changes the logits
    // The DoRA adapter (use_dora: magnitudes saved), and the logits with it.
    const dora = json('work/adapter-dora/adapter.json');
    expect(dora.via).toBe('lorafleet train');
    const doraConfig = JSON.parse(
      readFileSync(join(dora.adapterDir, 'adapter_config.json'), 'utf8'),
    );
    expect(doraConfig.use_dora).toBe(true);
    expect(meta.files).toContain('adapted-dora.f32');
    expect(meta.doraEffect).toBeGreaterThan(1e-2);

    // Each Llama-family folder's logits, in the files reference.py check-families reads.
    const families = JSON.parse(readFileSync(join(root, 'test/gpu/families.json'), 'utf8'));
    for (const name of Object.keys(families)) {
      const family = json(`work/families/${name}/logits-wasm/meta.json`);
      expect(family).toMatchObject({ model: families[name].model_type, shape: [2, 24, 300] });
      const bytes = readFileSync(join(out, `work/families/${name}/logits-wasm/base.f32`));
      const logits = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      expect(logits.length).toBe(2 * 24 * 300);
      expect(logits.every(Number.isFinite)).toBe(true);
      expect(Math.max(...logits) - Math.min(...logits)).toBeGreaterThan(0.1);
    }

    const grads = json('work/grads.json');
    for (const kind of ['lora', 'full']) expect(grads[kind].relative).toBeLessThan(1e-5);

    const report = json('gpu-report.json');
    expect(report.throughput.project.tokensPerSecond).toBeGreaterThan(0);
    expect(report.summary.join('\n')).toMatch(/project wasm: \d+ tokens\/s/);
    // The profile: kernels timed (wall time on wasm) and summed by kernel.
    expect(report.profile.kernels).toBeGreaterThan(10);
    expect(report.profile.byKernel.map((e: { key: string }) => e.key)).toContain('BatchMatMul');
    expect(report.summary.join('\n')).toMatch(/profile: one step [\d.]+ ms wall/);
  });
});
