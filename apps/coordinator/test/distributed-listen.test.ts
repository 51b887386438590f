// `lorafleet train --listen URL --expect N` with real processes: N workers
// started by hand join and train the adapter a `--workers N` run trains, and a
// non-loopback address is refused without --allow-remote.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPeftAdapter } from '@lorafleet/core';
import {
  REPO_ROOT,
  WORKER_BIN,
  freePort,
  lorafleet,
  numberedPatternRecords,
  removeDir,
  trainFixture,
} from './helpers.js';

const CLI_BIN = join(REPO_ROOT, 'apps', 'coordinator', 'bin', 'lorafleet.js');

const TRAIN = ['--steps', '8', '--batch-size', '6', '--lora-dropout', '0', '--lr', '1e-2'];

let dir: string | undefined;
let model: string;
let data: string;
const started: ChildProcess[] = [];

beforeAll(async () => {
  ({ dir, model, data } = await trainFixture('listen', numberedPatternRecords(40)));
}, 300_000);

afterAll(async () => {
  for (const child of started) if (child.exitCode === null) child.kill('SIGKILL');
  await removeDir(dir);
});

const trainArgs = (out: string, more: string[]) => [
  'train',
  ...['--model', model, '--data', data, '--out', join(dir!, out)],
  ...TRAIN,
  ...more,
];

interface Finished {
  code: number | null;
  stderr: string;
}

/** A process this test started, its stderr collected; `waitFor` polls stderr for a pattern. */
function start(script: string, args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [script, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 90_000,
    env: { ...process.env, ...env },
  });
  started.push(child);
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const done = new Promise<Finished>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
  const waitFor = async (pattern: RegExp): Promise<void> => {
    while (!pattern.test(stderr)) {
      if (child.exitCode !== null) throw new Error(`exited before ${pattern}: ${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  return { child, done, waitFor };
}

async function adapterOf(out: string): Promise<Map<string, Float32Array>> {
  const adapter = await loadPeftAdapter(join(dir!, out, 'adapter'));
  const flat = new Map<string, Float32Array>();
  for (const [path, m] of adapter.modules) flat.set(`${path}.A`, m.a).set(`${path}.B`, m.b);
  return flat;
}

describe('train --listen URL --expect N', () => {
  it('trains with external workers the adapter that --workers N trains', async () => {
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    const coordinator = start(
      CLI_BIN,
      trainArgs('listen', ['--listen', endpoint, '--expect', '2']),
    );
    await coordinator.waitFor(/waiting for workers: 0\/2/);
    const workers = [0, 1].map(() => start(WORKER_BIN, ['--coordinator', endpoint]));
    const result = await coordinator.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/waiting for workers: 2\/2/);
    for (const w of workers) expect((await w.done).code).toBe(0);

    const spawned = await lorafleet(trainArgs('spawned', ['--workers', '2']));
    expect(spawned.code, spawned.stderr).toBe(0);
    const expected = await adapterOf('spawned');
    const actual = await adapterOf('listen');
    expect([...actual.keys()]).toEqual([...expected.keys()]);
    for (const [key, values] of expected) {
      const other = actual.get(key)!;
      let max = 0;
      for (let i = 0; i < values.length; i++) max = Math.max(max, Math.abs(values[i]! - other[i]!));
      expect(max, key).toBeLessThan(1e-6);
    }
  });

  it('refuses a worker pinned to another --wire-dtype than the run, naming both', async () => {
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    const coordinator = start(
      CLI_BIN,
      trainArgs('pinned', ['--listen', endpoint, '--expect', '2', '--wire-dtype', 'bf16']),
    );
    await coordinator.waitFor(/waiting for workers: 0\/2/);
    const workers = [
      start(WORKER_BIN, ['--coordinator', endpoint, '--wire-dtype', 'fp16']),
      start(WORKER_BIN, ['--coordinator', endpoint]),
    ];
    const refused = await workers[0]!.done;
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(
      /this worker runs with --wire-dtype fp16, but run \S+ sends gradients in bf16/,
    );
    const result = await coordinator.done;
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/--wire-dtype fp16[^]*bf16/);
  });

  it('lets a new worker join a running job after one is lost; it receives the current state first', async () => {
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    const out = join(dir!, 'rejoin');
    // A test hook slows each step so the run is still going when the new worker arrives.
    const slow = { LORAFLEET_FAULT_STEP_DELAY_MS: '100' };
    const coordinator = start(
      CLI_BIN,
      [
        'train',
        ...['--model', model, '--data', data, '--out', out, '--steps', '60', '--batch-size', '6'],
        ...['--listen', endpoint, '--expect', '2', '--min-workers', '1'],
        // Adafactor: the state handed over holds its factored moments, not AdamW's.
        ...['--optim', 'adafactor'],
      ],
      slow,
    );
    await coordinator.waitFor(/waiting for workers: 0\/2/);
    const first = [0, 1].map(() => start(WORKER_BIN, ['--coordinator', endpoint], slow));
    await coordinator.waitFor(/is ready[^]*is ready/);
    first[0]!.child.kill('SIGKILL');
    await coordinator.waitFor(/ lost: /);
    const late = start(WORKER_BIN, ['--coordinator', endpoint], slow);
    await coordinator.waitFor(/joined the ring at step \d+ as rank 1/);
    const result = await coordinator.done;
    expect(result.code, result.stderr).toBe(0);
    expect((await first[1]!.done).code).toBe(0);
    const joined = await late.done;
    expect(joined.code, joined.stderr).toBe(0);
    expect(joined.stderr).toMatch(/loaded the trainer state of step \d+/);
    const ledger = (await readFile(join(out, 'ledger.jsonl'), 'utf8')).trim().split('\n');
    expect(ledger).toHaveLength(60);
  });

  it('refuses a non-loopback address without --allow-remote', async () => {
    const endpoint = `tcp://0.0.0.0:${await freePort()}`;
    const { code, stderr } = await lorafleet(
      trainArgs('remote', ['--listen', endpoint, '--expect', '2']),
    );
    expect(code).toBe(2);
    expect(stderr).toMatch(
      /without CURVE the traffic is not encrypted or authenticated: add --curve-key/,
    );
  });

  it('gives up when too few workers join within --join-timeout', async () => {
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    const { code, stderr } = await lorafleet(
      trainArgs('lonely', ['--listen', endpoint, '--expect', '2', '--join-timeout', '1']),
    );
    expect(code).toBe(1);
    expect(stderr).toMatch(/timed out after 1 s waiting for workers: 0\/2/);
  });
});
