// `lorafleet train --workers N` with real processes and real sockets: N
// workers must train the same adapter as one process (DESIGN.md, data-parallel
// equivalence), and unrecoverable failures must end the run with a message
// naming the worker (distributed-faults.test.ts: the recoverable ones).
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPeftAdapter, readSafetensorsFile } from '@lorafleet/core';
import {
  REPO_ROOT,
  TINY_CONFIG,
  WORKERS_TOLERANCE,
  WORKER_BIN,
  adapterGap,
  initTinyModel,
  lorafleet,
  numberedPatternRecords,
  readJson,
  removeDir,
  writeJsonl,
  trainFixture,
} from './helpers.js';

const CLI_BIN = join(REPO_ROOT, 'apps', 'coordinator', 'bin', 'lorafleet.js');

// lr 1e-2 so that 20 steps move the adapter far enough for a difference to show.
const TRAIN = ['--steps', '20', '--batch-size', '6', '--lora-dropout', '0', '--lr', '1e-2'];

let dir: string | undefined;
let model: string;
let data: string;
let valid: string;

beforeAll(async () => {
  ({ dir, model, data } = await trainFixture('distributed', numberedPatternRecords(40)));
  valid = await writeJsonl(
    join(dir, 'valid.jsonl'),
    Array.from({ length: 9 }, (_, i) => ({ text: `abcabc abc ${i % 4}; held out ${i}.` })),
  );
}, 300_000);

afterAll(() => removeDir(dir));

const train = (out: string, workers: number, more: string[] = []) =>
  lorafleet([
    'train',
    ...['--model', model, '--data', data, '--out', join(dir!, out)],
    ...TRAIN,
    ...['--workers', String(workers), ...more],
  ]);

async function adapterOf(out: string): Promise<Map<string, Float32Array>> {
  const adapter = await loadPeftAdapter(join(dir!, out, 'adapter'));
  const flat = new Map<string, Float32Array>();
  for (const [path, m] of adapter.modules) flat.set(`${path}.A`, m.a).set(`${path}.B`, m.b);
  return flat;
}

async function lossesOf(out: string): Promise<number[]> {
  const text = await readFile(join(dir!, out, 'metrics.jsonl'), 'utf8');
  return text
    .trimEnd()
    .split('\n')
    .map((line) => (JSON.parse(line) as { loss: number }).loss);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

describe('train --workers N', () => {
  it('trains the same adapter, loss curve and held-out losses with 1, 2 and 3 workers', async () => {
    const stderr = new Map<number, string>();
    for (const workers of [1, 2, 3]) {
      // 3 workers also evaluate in batches of 3 rows (--eval-batch-size): the sums do not change.
      const result = await train(`w${workers}`, workers, [
        ...['--eval-data', valid, '--eval-every', '10'],
        ...(workers === 3 ? ['--eval-batch-size', '3'] : []),
      ]);
      expect(result.code, result.stderr).toBe(0);
      if (workers === 3) expect(result.stdout).toMatch(/eval data: .*; batches of 3\n/);
      stderr.set(workers, result.stderr);
    }
    type Summary = { evalLossBefore: number; evalLossAfter: number };
    const evals = async (out: string) => {
      const s = await readJson<Summary>(join(dir!, out, 'summary.json'));
      const text = await readFile(join(dir!, out, 'metrics.jsonl'), 'utf8');
      const at10 = (JSON.parse(text.split('\n')[9]!) as { evalLoss: number }).evalLoss;
      return [s.evalLossBefore, at10, s.evalLossAfter];
    };
    const oneEvals = await evals('w1');
    expect(oneEvals.every(Number.isFinite)).toBe(true);
    expect(oneEvals[2]!).toBeLessThan(oneEvals[0]!);
    const one = await adapterOf('w1');
    const oneLosses = await lossesOf('w1');
    expect(oneLosses).toHaveLength(20);
    expect(oneLosses.at(-1)!).toBeLessThan(oneLosses[0]! - 0.05); // it did learn
    for (const workers of [2, 3]) {
      const many = await adapterOf(`w${workers}`);
      expect([...many.keys()]).toEqual([...one.keys()]);
      for (const [key, values] of one) {
        expect(maxAbsDiff(values, many.get(key)!), `${key}, ${workers} workers`).toBeLessThan(1e-5);
      }
      expect(maxAbsDiff(oneLosses, await lossesOf(`w${workers}`))).toBeLessThan(1e-4);
      // Each worker evaluates its shard of the held-out rows; the sums make the same loss.
      expect(maxAbsDiff(oneEvals, await evals(`w${workers}`))).toBeLessThan(1e-5);
      const summary = await readJson<{ workers: number; steps: number; saved: string }>(
        join(dir!, `w${workers}`, 'summary.json'),
      );
      // No worker may be lost on the way (the adapter would still match: the ring recovers).
      expect(summary, stderr.get(workers)).toMatchObject({
        workers,
        steps: 20,
        saved: join(dir!, `w${workers}`, 'adapter'),
      });
    }
  });

  it('trains the same adapter with dropout on, 1 and 3 workers, when their micro-batches hold the same rows', async () => {
    // GPT-2's own dropout (0.1 at embd, attn and resid) and LoRA's: each
    // micro-batch's masks are keyed by its sample ids, so the same rows draw
    // the same masks on 1 worker (3 micro-batches of 2) as on 3 (1 each).
    const dropoutModel = await initTinyModel(dir!, 'dropout-model', 0, TINY_CONFIG);
    const run = (out: string, workers: number) =>
      lorafleet([
        'train',
        ...['--model', dropoutModel, '--data', data, '--out', join(dir!, out)],
        ...['--steps', '6', '--batch-size', '6', '--micro-batch-size', '2', '--lr', '1e-2'],
        ...['--lora-dropout', '0.1', '--workers', String(workers)],
      ]);
    for (const r of [await run('d1', 1), await run('d3', 3)]) expect(r.code, r.stderr).toBe(0);
    const { diff, largestB } = await adapterGap(
      join(dir!, 'd1', 'adapter'),
      join(dir!, 'd3', 'adapter'),
    );
    expect(largestB).toBeGreaterThan(1e-2); // it trained
    expect(diff).toBeLessThan(WORKERS_TOLERANCE);
    expect(maxAbsDiff(await lossesOf('d1'), await lossesOf('d3'))).toBeLessThan(1e-4);
  });

  it('warns when a step has fewer rows than workers, and trains on', async () => {
    const result = await lorafleet([
      'train',
      ...['--model', model, '--data', data, '--out', join(dir!, 'idle')],
      ...['--steps', '1', '--batch-size', '2', '--workers', '3'],
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain(
      "warning: a step's 2 rows leave 1 of the 3 workers with none: they train nothing and every step " +
        'still waits on them; raise --batch-size to 3 (or a multiple of it) or run 2 workers',
    );
    const quiet = await train('not-idle', 3);
    expect(quiet.stderr).not.toMatch(/workers with none/);
    // --micro-batch-size defaults to --batch-size (6); a worker's holds its share.
    expect(quiet.stdout).toMatch(/~2 rows per worker, micro-batches of 2\n/);
  });

  it('rejects --workers 0', async () => {
    const { code, stderr } = await train('w0', 0);
    expect(code).toBe(2);
    expect(stderr).toMatch(/--workers must be >= 1/);
  });

  it('fine-tunes every weight with N workers as with one (--full-finetune)', async () => {
    const fullRun = (out: string, workers: number) =>
      lorafleet([
        'train',
        ...['--model', model, '--data', data, '--out', join(dir!, out), '--full-finetune'],
        ...['--steps', '4', '--batch-size', '6', '--lr', '1e-3', '--workers', String(workers)],
      ]);
    for (const r of [await fullRun('f1', 1), await fullRun('f2', 2)])
      expect(r.code, r.stderr).toBe(0);
    const weights = async (run: string) =>
      (await readSafetensorsFile(join(dir!, run, 'model', 'model.safetensors'))).tensors;
    const [one, two] = [await weights('f1'), await weights('f2')];
    expect([...two.keys()]).toEqual([...one.keys()]);
    const f32 = (b: Uint8Array) => new Float32Array(b.slice().buffer);
    for (const [name, t] of one) {
      expect(maxAbsDiff(f32(t.bytes), f32(two.get(name)!.bytes)), name).toBeLessThan(1e-5);
    }
  });

  it('fails the run, naming the worker, when one dies and --min-workers cannot be met', async () => {
    const run = spawnLorafleet([
      'train',
      ...['--model', model, '--data', data, '--out', join(dir!, 'killed'), '--workers', '2'],
      ...['--steps', '100000', '--batch-size', '6'],
      ...['--max-restarts', '0', '--min-workers', '2', '--join-timeout', '2'],
    ]);
    // The workers print "rank R/N (pid P) of run ...: ... ready" once loaded.
    const pids = await run.waitFor(/rank (\d)\/2 \(pid (\d+)\)/g, 2);
    process.kill(pids[1]!, 'SIGKILL');
    const { code, stderr } = await run.done;
    expect(code).toBe(1);
    // Its exit, or a send to its closed socket, whichever the coordinator sees first.
    expect(stderr).toMatch(
      new RegExp(`\\(pid ${pids[1]}\\) lost: .*(exited with signal SIGKILL|Host unreachable)`),
    );
    expect(stderr).toMatch(/only 1 worker\(s\) after waiting 2 s at step \d+; --min-workers is 2/);
    expect(await goneWithin(pids[0]!, 5000)).toBe(true); // the coordinator took the survivor down
  });
});

describe('lorafleet-worker', () => {
  it('exits with a clear error when its coordinator is not there', async () => {
    const endpoint = `tcp://127.0.0.1:${await deadPort()}`;
    const started = performance.now();
    const { code, stderr } = await runWorker(['--coordinator', endpoint, '--timeout', '1']);
    const seconds = (performance.now() - started) / 1000;
    expect(code).toBe(1);
    expect(stderr).toContain(`no message from the coordinator at ${endpoint} for 1 s`);
    expect(stderr).toMatch(
      /; every TCP connection to it failed \(\d+ tries\): nothing listens there/,
    );
    expect(seconds).toBeLessThan(10);
  });

  it('says every 10 s while it waits to join unconnected where the connection stands', async () => {
    const endpoint = `tcp://127.0.0.1:${await deadPort()}`;
    const { code, stderr } = await runWorker(['--coordinator', endpoint, '--join-timeout', '11']);
    expect(code).toBe(1);
    expect(stderr).toMatch(
      new RegExp(
        `still waiting to join the run at ${endpoint} \\(1\\d s\\): every TCP connection to it failed`,
      ),
    );
    expect(stderr).toContain(`no message from the coordinator at ${endpoint} for 11 s`);
  });

  it('requires --coordinator', async () => {
    const { code, stderr } = await runWorker([], { LORAFLEET_COORDINATOR: '' });
    expect(code).toBe(2);
    expect(stderr).toMatch(/--coordinator \(or LORAFLEET_COORDINATOR\) is required/);
  });
});

interface RunningCli {
  /** The pids of `count` matches of `pattern` (group 1: rank, group 2: pid) in stderr, by rank. */
  waitFor(pattern: RegExp, count: number): Promise<number[]>;
  done: Promise<{ code: number | null; stderr: string }>;
}

/** `lorafleet ARGS` as a process whose stderr can be watched while it runs. */
function spawnLorafleet(args: string[]): RunningCli {
  const child = spawn(process.execPath, [CLI_BIN, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 60_000,
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const done = new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
  let finished = false;
  void done.then(() => (finished = true));
  const waitFor = async (pattern: RegExp, count: number): Promise<number[]> => {
    for (;;) {
      const pids: number[] = [];
      for (const m of stderr.matchAll(pattern)) pids[Number(m[1])] = Number(m[2]);
      if (pids.filter(Boolean).length === count) return pids;
      if (finished)
        throw new Error(`lorafleet exited before ${count} matches of ${pattern}: ${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  return { waitFor, done };
}

/** Whether process `pid` is gone (killed and reaped) within `ms`. */
async function goneWithin(pid: number, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    if (performance.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A port nothing listens on (free a moment ago). */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function runWorker(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER_BIN, ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...env },
      timeout: 30_000,
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}
