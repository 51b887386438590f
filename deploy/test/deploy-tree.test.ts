// What the container image runs (deploy/k8s/Dockerfile): the production trees
// of the CLI and the worker from `pnpm deploy --prod`, made here from the
// local store (offline). Both answer --help, and together they train a step
// under the launcher contract: rank 0 from the CLI tree, rank 1 the worker tree.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NO_DROPOUT_CONFIG,
  REPO_ROOT,
  ensureBuilt,
  freePort,
  initTinyModel,
  makeTempDir,
  numberedPatternRecords,
  removeDir,
  writeJsonl,
} from './run-helpers.js';

const run = promisify(execFile);

let dir: string;
let cli: string;
let worker: string;
const started: ChildProcess[] = [];

beforeAll(async () => {
  await ensureBuilt();
  // As the image's build stage, which has gcc and the Vulkan headers (scripts/test-machine.sh installs them here).
  await run(process.execPath, [join(REPO_ROOT, 'packages/core/scripts/build-vulkan-layer.mjs')]);
  dir = await makeTempDir('deploy-tree');
  for (const [name, pkg] of [
    ['cli', '@lorafleet/coordinator'],
    ['worker', '@lorafleet/worker-daemon'],
  ] as const) {
    await run('pnpm', ['--filter', pkg, 'deploy', '--prod', '--offline', join(dir, name)], {
      cwd: REPO_ROOT,
      timeout: 120_000,
    });
  }
  cli = join(dir, 'cli', 'bin', 'lorafleet.js');
  worker = join(dir, 'worker', 'bin', 'lorafleet-worker.js');
}, 180_000);

afterAll(async () => {
  for (const c of started) if (c.exitCode === null) c.kill('SIGKILL');
  await removeDir(dir);
});

function start(script: string, args: string[], env: Record<string, string>) {
  // Outside the repository, so nothing resolves from its node_modules.
  const child = spawn(process.execPath, [script, ...args], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  started.push(child);
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (output += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (output += s));
  return new Promise<{ code: number | null; output: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, output })),
  );
}

describe('the production deploy trees (what the image runs)', () => {
  it('answer --help', async () => {
    const w = await run(process.execPath, [worker, '--help'], { cwd: dir });
    expect(w.stdout).toMatch(/--launcher NAME/);
    const c = await run(process.execPath, [cli, 'train', '--help'], { cwd: dir });
    expect(c.stdout).toMatch(/--launcher NAME/);
  });

  it("carry core's Vulkan device-select layer, where the worker finds it (identical GPUs)", async () => {
    const find =
      "const m = await import('@lorafleet/core'); console.log(m.builtDeviceLayer() ?? 'none');";
    for (const tree of ['worker', 'cli']) {
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', find], {
        cwd: join(dir, tree),
      });
      expect(stdout.trim(), tree).toMatch(new RegExp(`^${dir}/${tree}/.*vulkan-layer$`));
    }
  });

  it('train one step: rank 0 from the CLI tree, rank 1 the worker tree', async () => {
    const model = await initTinyModel(dir, 'model', 0, NO_DROPOUT_CONFIG);
    const data = await writeJsonl(join(dir, 'train.jsonl'), numberedPatternRecords(20));
    const env = {
      WORLD_SIZE: '2',
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: String(await freePort()),
    };
    const out = join(dir, 'run');
    const [rank0, rank1] = await Promise.all([
      start(
        cli,
        [
          'train',
          '--launcher',
          'env',
          '--model',
          model,
          '--data',
          data,
          '--out',
          out,
          '--steps',
          '1',
          '--seq-len',
          '32',
        ],
        { ...env, RANK: '0', LOCAL_RANK: '0' },
      ),
      start(worker, ['--launcher', 'env'], { ...env, RANK: '1', LOCAL_RANK: '1' }),
    ]);
    expect(rank0.code, rank0.output).toBe(0);
    expect(rank1.code, rank1.output).toBe(0);
    expect(rank0.output).toMatch(/done: 1 steps on 2 workers/);
  }, 120_000);
});
