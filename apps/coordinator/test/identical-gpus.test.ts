// One worker per GPU on a host whose GPUs all have one name (eight H200s):
// Dawn selects adapters by name, so `--gpus 0,1` reaches the second GPU only
// through the device-select Vulkan layer (packages/core/vulkan-layer/). Here
// the GPUs are two copies of SwiftShader, each a driver of its own to the
// Vulkan loader with the same device name; the loader's driver log
// (VK_LOADER_DEBUG=driver) names the copy each worker's device came from.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPeftAdapter } from '@lorafleet/core';
import {
  SWIFTSHADER_NAME,
  driversUsed,
  fakePciLayer,
  identicalSwiftShaders,
  requireDeviceLayer,
  testBackends,
} from '@lorafleet/core/testing';
import {
  NO_DROPOUT_CONFIG,
  SEQ_LEN,
  ensureBuilt,
  initTinyModel,
  lorafleet,
  lorafleetOk,
  makeTempDir,
  numberedPatternRecords,
  removeDir,
  writeJsonl,
  WORKER_BIN,
} from './helpers.js';

const withWebGpu = testBackends().includes('webgpu');
const TRAIN = ['--steps', '3', '--batch-size', '4', '--lora-dropout', '0', '--lr', '1e-2'];

let dir: string | undefined;
let model: string;
let data: string;
let twins: { driverFiles: string; libraries: string[] };

beforeAll(async () => {
  await ensureBuilt();
  requireDeviceLayer();
  dir = await makeTempDir('identical-gpus');
  model = await initTinyModel(dir, 'model', 0, NO_DROPOUT_CONFIG);
  data = await writeJsonl(join(dir, 'train.jsonl'), numberedPatternRecords(16));
  twins = identicalSwiftShaders(dir, 2);
}, 300_000);

afterAll(() => removeDir(dir));

/** The loader sees the two copies, and logs which one each device comes from. */
const onTwins = () => ({
  VK_DRIVER_FILES: twins.driverFiles,
  VK_ICD_FILENAMES: twins.driverFiles,
  VK_LOADER_DEBUG: 'driver',
});

function trainArgs(out: string, more: string[]): string[] {
  return [
    ...['train', '--model', model, '--data', data, '--seq-len', SEQ_LEN],
    ...['--out', join(dir!, out), ...TRAIN, ...more],
  ];
}

describe.skipIf(!withWebGpu)('webgpu workers on identical GPUs (two SwiftShader copies)', () => {
  it('train --workers 2 puts each worker on its own GPU (the default without --gpus) and trains as wasm does', async () => {
    const [gpu] = await Promise.all([
      lorafleet(trainArgs('twins', ['--workers', '2', '--backend', 'webgpu']), 300_000, onTwins()),
      lorafleetOk(trainArgs('wasm', ['--workers', '2', '--backend', 'wasm'])),
    ]);
    const said = `${gpu.stdout}${gpu.stderr}`;
    expect(gpu.code, said.slice(-4000)).toBe(0);
    expect(said).toContain(`gpu 0: ${SWIFTSHADER_NAME} (1st of 2 so named)`);
    expect(said).toContain(`gpu 1: ${SWIFTSHADER_NAME} (2nd of 2 so named)`);
    expect(said).toContain(
      `gpus: 0,1, one per worker in turn (0: ${SWIFTSHADER_NAME}, 1: ${SWIFTSHADER_NAME}); --gpus I,J,... chooses`,
    );
    expect(said).not.toContain('they share that GPU'); // each has its own
    // Every device the workers created came from one of the copies, and both were used.
    const used = driversUsed(said);
    expect(used.length).toBeGreaterThanOrEqual(2);
    expect(new Set(used)).toEqual(new Set(twins.libraries));
    const [x, y] = await Promise.all(
      ['twins', 'wasm'].map((run) => loadPeftAdapter(join(dir!, run, 'adapter'))),
    );
    let gap = 0;
    let largest = 0;
    for (const [path, m] of x!.modules) {
      const n = y!.modules.get(path)!;
      for (const [p, q] of [
        [m.a, n.a],
        [m.b, n.b],
      ] as const) {
        for (let i = 0; i < p.length; i++) {
          gap = Math.max(gap, Math.abs(p[i]! - q[i]!));
          largest = Math.max(largest, Math.abs(q[i]!));
        }
      }
    }
    expect(largest).toBeGreaterThan(1e-3); // trained: B is no longer zero
    expect(gap).toBeLessThan(1e-4); // fp32 in another order, as in cli-webgpu.test.ts
  }, 300_000);

  it('lorafleet-worker --list-gpus lists both, and says how a worker tells them apart', async () => {
    const { code, stdout } = await worker(['--list-gpus']);
    expect(code).toBe(0);
    expect(stdout).toContain(
      `  0: ${SWIFTSHADER_NAME} (vulkan)\n  1: ${SWIFTSHADER_NAME} (vulkan)\n`,
    );
    expect(stdout).toMatch(
      /Adapters 0, 1 share a name[^\n]*VK_LAYER_LORAFLEET_device_select \([^)]*vulkan-layer\), counting those so named in PCI address order/,
    );
  });

  it('lorafleet-worker --gpu 2 of two exits 3 (backend unavailable) and lists them', async () => {
    const { code, stderr } = await worker([
      ...['--backend', 'webgpu', '--gpu', '2', ...NO_COORDINATOR],
    ]);
    expect(code).toBe(3);
    expect(stderr).toContain(`--gpu 2: there are 2 WebGPU adapter(s):\n  0: ${SWIFTSHADER_NAME}`);
  });

  it('counts identical GPUs in PCI address order where the driver reports addresses', async () => {
    // A test layer below the device-select layer gives the copies made-up
    // addresses in the reverse of the loader's order: with them, --gpu 0 must
    // open the device the loader lists second, and name its address.
    const pci = fakePciLayer(dir!);
    const open = (gpu: number, env: Record<string, string> = {}) =>
      worker(['--backend', 'webgpu', '--gpu', String(gpu), ...NO_COORDINATOR], {
        VK_LOADER_DEBUG: 'driver',
        ...env,
      });
    const [plain0, plain1, pci0, pci1] = await Promise.all([
      open(0),
      open(1),
      open(0, pci),
      open(1, pci),
    ]);
    expect(plain0.stderr).toContain(`gpu 0: ${SWIFTSHADER_NAME} (1st of 2 so named))`);
    expect(pci0.stderr).toContain(
      `gpu 0: ${SWIFTSHADER_NAME} (1st of 2 so named, PCI 0000:01:00.0)`,
    );
    expect(pci1.stderr).toContain(
      `gpu 1: ${SWIFTSHADER_NAME} (2nd of 2 so named, PCI 0000:02:00.0)`,
    );
    const [p0, p1, q0, q1] = [plain0, plain1, pci0, pci1].map((r) => driversUsed(r.stderr));
    expect(new Set([...p0!, ...p1!])).toEqual(new Set(twins.libraries));
    expect(p0).not.toEqual(p1);
    expect(q0).toEqual(p1);
    expect(q1).toEqual(p0);
  });
});

/** A coordinator nobody runs: the worker opens its GPU, then gives up after 1 s. */
const NO_COORDINATOR = ['--coordinator', 'tcp://127.0.0.1:9', '--timeout', '1'];

/** `lorafleet-worker ARGS` on the two copies, to its end. */
function worker(args: string[], more: Record<string, string> = {}) {
  return lorafleet(args, 60_000, { ...onTwins(), VK_LOADER_DEBUG: '', ...more }, WORKER_BIN);
}
