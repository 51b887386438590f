// A compute backend that cannot start on this machine (here: webgpu with the
// Vulkan loader pointed at a driver manifest that does not exist, so Dawn
// finds no adapter, as on a machine or container without a GPU driver) fails
// at once, says why once per cause, and what this machine shows: the
// in-process worker before any output folder exists, spawned workers with
// the daemon's exit status 3, grouped into one reason. Real processes.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireVulkanDriver, testBackends } from '@lorafleet/core/testing';
import { WORKER_EXIT } from '@lorafleet/worker';
import { killLeftovers, signal, start } from './fault-runs.js';
import {
  SEQ_LEN,
  WORKER_BIN,
  ensureBuilt,
  freePort,
  initTinyModel,
  lorafleet,
  makeTempDir,
  numberedPatternRecords,
  removeDir,
  writeJsonl,
} from './helpers.js';

const GONE = '/nonexistent/lorafleet/nvidia_icd.json';
/** The loader reads VK_DRIVER_FILES first; both name the missing manifest. */
const NO_DRIVER = { VK_DRIVER_FILES: GONE, VK_ICD_FILENAMES: GONE, LORAFLEET_DAWN_FLAGS: '' };
/** What the diagnosis adds to "no WebGPU adapter found" on such a machine. */
const SHOWS = `What this machine shows: VK_DRIVER_FILES names ${GONE}, which does not exist`;

let dir: string;
let args: (out: string) => string[];

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('no-backend');
  const model = await initTinyModel(dir, 'tiny');
  const data = await writeJsonl(join(dir, 'train.jsonl'), numberedPatternRecords(24));
  args = (out) => [
    'train',
    ...['--model', model, '--data', data, '--seq-len', SEQ_LEN, '--steps', '2'],
    ...['--backend', 'webgpu', '--out', join(dir, out)],
  ];
}, 120_000);

afterAll(() => removeDir(dir));
afterEach(killLeftovers);

/** The last line of `text` that is not empty. */
const lastLine = (text: string) => text.trimEnd().split('\n').pop()!;

describe('a backend that cannot start', () => {
  it('fails an in-process run before it writes anything, saying what the machine shows', async () => {
    const r = await lorafleet(args('inprocess'), 60_000, NO_DRIVER);
    expect(r.code).toBe(1);
    expect(lastLine(r.stderr)).toMatch(
      new RegExp(
        `^lorafleet train: no WebGPU adapter found \\(Dawn, its default backend\\)\\. ${SHOWS}[;.] .*On Linux .* use --backend wasm$`,
      ),
    );
    expect(r.stderr).not.toContain('lost'); // not a lost worker of a ring
    expect(r.stdout).toBe(''); // nothing planned, nothing trained
    expect(existsSync(join(dir, 'inprocess'))).toBe(false);
  });

  it('fails a run of spawned workers with one reason for all of them', async () => {
    const r = await lorafleet([...args('spawned'), '--workers', '2'], 60_000, NO_DRIVER);
    expect(r.code).toBe(1);
    expect(lastLine(r.stderr)).toMatch(
      new RegExp(
        `^lorafleet train: worker \\d \\(pid \\d+\\), worker \\d \\(pid \\d+\\): cannot compute on webgpu: ` +
          `no WebGPU adapter found \\(Dawn, its default backend\\)\\. ${SHOWS}[;.]`,
      ),
    );
    expect(lastLine(r.stderr)).not.toMatch(/exited with code|its last output/);
  });

  it('fails rank 0 under a launcher at once when its own worker cannot compute, not after --join-timeout', async () => {
    const launch = {
      WORLD_SIZE: '2',
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: String(await freePort()),
    };
    const t0 = performance.now();
    const r = await lorafleet(
      [...args('launched'), '--launcher', 'env'],
      60_000, // the default --join-timeout is 120 s: waiting it out fails this test
      { ...NO_DRIVER, ...launch, RANK: '0', LOCAL_RANK: '0' },
    );
    expect(r.code).toBe(1);
    expect(lastLine(r.stderr)).toMatch(
      new RegExp(
        `^lorafleet train: rank 0's worker cannot compute on webgpu: no WebGPU adapter found .*${SHOWS}`,
      ),
    );
    expect((performance.now() - t0) / 1000).toBeLessThan(30);
  });

  it('makes lorafleet-worker exit 3 with the reason as its last line, before it joins', async () => {
    // Nothing listens on the coordinator's port: the worker must fail before it tries to join.
    const child = spawn(
      process.execPath,
      [WORKER_BIN, '--coordinator', 'tcp://127.0.0.1:9', '--backend', 'webgpu'],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...NO_DRIVER } },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(WORKER_EXIT.backend);
    expect(lastLine(stderr)).toMatch(
      new RegExp(`^lorafleet-worker: no WebGPU adapter found .*${SHOWS}`),
    );
  }, 60_000);
});

// Without a Vulkan driver testBackends() fails and says what to install; only a
// machine marked LORAFLEET_NO_VULKAN=1 leaves webgpu out.
const withWebGpu = testBackends().includes('webgpu');

/** The Vulkan driver manifest the webgpu tests use, copied to `to` with an absolute library path. */
function copyDriverManifest(to: string): string {
  const driver = requireVulkanDriver();
  const from =
    driver.kind === 'preset'
      ? driver.files.split(':')[0]!
      : driver.kind === 'swiftshader'
        ? driver.icd
        : driver.kind === 'system'
          ? driver.icds[0]!
          : '';
  const manifest = JSON.parse(readFileSync(from, 'utf8')) as { ICD: { library_path: string } };
  const lib = manifest.ICD.library_path;
  // A bare name is found on the library path; a relative path is relative to the manifest.
  if (lib.includes('/') && !isAbsolute(lib))
    manifest.ICD.library_path = resolve(dirname(from), lib);
  writeFileSync(to, JSON.stringify(manifest));
  return to;
}

describe.skipIf(!withWebGpu)('a replacement whose backend cannot start', () => {
  it('is not respawned again: the run trains on with the survivor', async () => {
    // The driver is there while the run starts, and gone when worker 1 is replaced.
    const icd = copyDriverManifest(join(dir, 'driver.json'));
    const out = join(dir, 'respawn');
    const run = start([...args('respawn'), '--workers', '2', '--steps', '5'], {
      VK_DRIVER_FILES: icd,
      VK_ICD_FILENAMES: icd,
      LORAFLEET_DAWN_FLAGS: '',
      LORAFLEET_FAULT_STEP_DELAY_MS: '100',
    });
    await run.untilStep(out, 2);
    rmSync(icd);
    signal(run.workerPids()[1]!, 'SIGKILL');
    const { code, output } = await run.done;
    expect(code, output).toBe(0);
    const replaced = /respawned as worker 2 \(pid (\d+)\)/.exec(output);
    expect(replaced, output).not.toBeNull();
    expect(output).toContain(
      `worker 2 (pid ${replaced![1]}) lost: cannot compute on webgpu: no WebGPU adapter found`,
    );
    expect(output).not.toContain('respawned as worker 3'); // it would fail alike
    expect(output).toMatch(/^done: 5 steps/m);
  }, 120_000);
});

describe.skipIf(!withWebGpu)('a launched rank whose backend cannot start', () => {
  it.each([
    ['lorafleet train --launcher (as an sbatch task)', 'train'],
    ['lorafleet-worker --launcher (as a worker pod)', 'daemon'],
  ] as const)(
    '%s tells rank 0, which stops at once with its reason, not after --join-timeout',
    async (_, how) => {
      const launch = {
        WORLD_SIZE: '2',
        MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: String(await freePort()),
      };
      const t0 = performance.now();
      // Rank 0 computes on SwiftShader; rank 1's machine has no driver.
      const rank1Env = { ...NO_DRIVER, ...launch, RANK: '1', LOCAL_RANK: '1' };
      const rank1 =
        how === 'train'
          ? lorafleet([...args(`launched-${how}`), '--launcher', 'env'], 60_000, rank1Env)
          : lorafleet(['--launcher', 'env', '--backend', 'webgpu'], 60_000, rank1Env, WORKER_BIN);
      const rank0 = lorafleet([...args(`launched-${how}`), '--launcher', 'env'], 60_000, {
        ...launch,
        RANK: '0',
        LOCAL_RANK: '0',
      });
      const [zero, one] = await Promise.all([rank0, rank1]);
      expect(zero.code, zero.stderr).toBe(1);
      expect(lastLine(zero.stderr)).toMatch(
        new RegExp(
          '^lorafleet train: a worker cannot compute, so the run cannot form: rank 1 on \\S+ ' +
            `\\(webgpu\\): no WebGPU adapter found .*${SHOWS}`,
        ),
      );
      expect(one.code).toBe(how === 'train' ? 1 : WORKER_EXIT.backend);
      expect(one.stderr).toContain('told the coordinator, which stops the run');
      expect((performance.now() - t0) / 1000).toBeLessThan(30);
    },
    60_000,
  );
});
