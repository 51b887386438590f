// Joins on a `--listen` run, with real processes and sockets: a peer that
// says Hello but never loads is dropped within twice the heartbeat timeout
// and an extra worker, kept as a standby, takes its place; a worker beyond
// the standbys is answered with the reason and exits 1 at once; junk frames
// are logged a few at a time and counted; the summary reports the true ring.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Dealer } from 'zeromq';
import { encodeControl } from '@lorafleet/protocol';
import { UNASSIGNED_RUN } from '@lorafleet/worker';
import {
  REPO_ROOT,
  WORKER_BIN,
  freePort,
  numberedPatternRecords,
  readJson,
  removeDir,
  trainFixture,
} from './helpers.js';

const CLI_BIN = join(REPO_ROOT, 'apps', 'coordinator', 'bin', 'lorafleet.js');

let dir: string | undefined;
let model: string;
let data: string;
const started: ChildProcess[] = [];
const sockets: Dealer[] = [];

beforeAll(async () => {
  ({ dir, model, data } = await trainFixture('joins', numberedPatternRecords(40)));
}, 300_000);

afterAll(async () => {
  for (const child of started) if (child.exitCode === null) child.kill('SIGKILL');
  for (const s of sockets) s.close();
  await removeDir(dir);
});

/** A process this test started, its stderr collected; `waitFor` polls stderr for a pattern. */
function start(script: string, args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [script, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 120_000,
    env: { ...process.env, ...env },
  });
  started.push(child);
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const done = new Promise<{ code: number | null; stderr: string; at: number }>((resolve) =>
    child.on('close', (code) => resolve({ code, stderr, at: performance.now() })),
  );
  const waitFor = async (pattern: RegExp): Promise<void> => {
    while (!pattern.test(stderr)) {
      if (child.exitCode !== null) throw new Error(`exited before ${pattern}: ${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  return { child, done, waitFor, stderr: () => stderr };
}

/** A peer that sends one valid Hello and then nothing (it never loads a replica). */
async function silentPeer(endpoint: string): Promise<Dealer> {
  const dealer = new Dealer({ linger: 0 });
  sockets.push(dealer);
  dealer.connect(endpoint);
  await dealer.send(
    encodeControl({
      runId: UNASSIGNED_RUN,
      body: {
        case: 'hello',
        value: {
          workerId: 'impostor:1',
          host: 'impostor',
          pid: 1,
          device: 'none',
          backend: 'wasm',
          capabilities: [],
          dataEndpoint: 'tcp://127.0.0.1:9',
          curvePublicKey: '',
        },
      },
    }),
  );
  return dealer;
}

const trainArgs = (out: string, endpoint: string, more: string[]) => [
  'train',
  ...['--model', model, '--data', data, '--out', join(dir!, out)],
  ...['--batch-size', '6', '--lora-dropout', '0', '--seq-len', '32'],
  ...['--listen', endpoint, ...more],
];

describe.concurrent('joins on a --listen run', () => {
  it('drops a peer that never becomes ready; a standby takes its place; the summary tells', async () => {
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    const slow = { LORAFLEET_FAULT_STEP_DELAY_MS: '100' };
    const out = 'standby';
    const coordinator = start(
      CLI_BIN,
      trainArgs(out, endpoint, ['--expect', '2', '--steps', '40', '--heartbeat-timeout', '4']),
      slow,
    );
    await coordinator.waitFor(/waiting for workers: 0\/2/);
    await silentPeer(endpoint);
    await coordinator.waitFor(/waiting for workers: 1\/2/);
    // Started together: the second to say Hello finds the run full and waits as a standby.
    const real = start(WORKER_BIN, ['--coordinator', endpoint], slow);
    const standby = start(WORKER_BIN, ['--coordinator', endpoint], slow);
    await coordinator.waitFor(/waiting for workers: 2\/2/);
    const welcomed = performance.now(); // the impostor's Welcome leaves now
    await coordinator.waitFor(/, standby\) said Hello/);
    await coordinator.waitFor(/\(impostor:1\) lost: never became ready/);
    // Twice the 4 s heartbeat timeout, plus a loaded machine's slack; not 40 s.
    expect((performance.now() - welcomed) / 1000).toBeLessThan(20);
    const result = await coordinator.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/joined the ring at step \d+ as rank 1/);
    for (const w of [real, standby]) expect((await w.done).code).toBe(0);
    const summary = await readJson<{
      workers: number;
      faults: { fewestWorkers: number; workersLost: number };
    }>(join(dir!, out, 'summary.json'));
    expect(summary.workers).toBe(2);
    expect(summary.faults.fewestWorkers).toBe(1);
    expect(summary.faults.workersLost).toBe(1);
  });

  it('answers a worker beyond the standbys with the reason; it exits 1 at once', async () => {
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    const slow = { LORAFLEET_FAULT_STEP_DELAY_MS: '100' };
    const coordinator = start(
      CLI_BIN,
      trainArgs('refused', endpoint, ['--expect', '1', '--steps', '30']),
      slow,
    );
    await coordinator.waitFor(/waiting for workers: 0\/1/);
    const first = start(WORKER_BIN, ['--coordinator', endpoint], slow);
    await coordinator.waitFor(/waiting for workers: 1\/1/);
    const standby = start(WORKER_BIN, ['--coordinator', endpoint], slow);
    await coordinator.waitFor(/, standby\) said Hello/);
    const t0 = performance.now();
    const extra = start(WORKER_BIN, ['--coordinator', endpoint], slow);
    const refused = await extra.done;
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      'the coordinator refused us: refused: the run already has its 1 workers and 1 standbys',
    );
    // Node and tfjs start-up on a loaded machine, not the worker's 60 s receive timeout.
    expect((refused.at - t0) / 1000).toBeLessThan(45);
    const result = await coordinator.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/refused \S+: the run already has its 1 workers and 1 standbys/);
    for (const w of [first, standby]) expect((await w.done).code).toBe(0);
  });

  it('logs a few junk frames and counts the rest', async () => {
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    const coordinator = start(
      CLI_BIN,
      trainArgs('junk', endpoint, ['--expect', '1', '--steps', '2', '--join-timeout', '6']),
    );
    await coordinator.waitFor(/waiting for workers: 0\/1/);
    const junk = new Dealer({ linger: 1000 });
    sockets.push(junk);
    junk.connect(endpoint);
    for (let i = 0; i < 2000; i++) await junk.send(Buffer.from(`junk ${i}`));
    const result = await coordinator.done;
    expect(result.code).toBe(1); // nobody joined within --join-timeout
    const shown = result.stderr.split('\n').filter((l) => l.includes('dropped a bad frame'));
    expect(shown.length).toBeGreaterThan(0);
    expect(shown.length).toBeLessThanOrEqual(10);
    const counted = /dropped (\d+) more bad frames \(not shown; (\d+) in all\)/.exec(result.stderr);
    expect(counted, result.stderr.slice(0, 2000)).not.toBeNull();
    expect(Number(counted![2])).toBe(2000);
    expect(Number(counted![1]) + shown.length).toBe(2000);
  });
});
