// Several hosts, each a network namespace with its own address (netns.ts):
// `lorafleet train --launcher env` (torchrun's variables) on every host, over
// CURVE. Checks: the adapter equals a single-process run; a partitioned
// worker is evicted and the run goes on, and after the link comes back the
// restarted worker rejoins with state transfer; a killed coordinator makes
// the workers exit non-zero within the heartbeat timeout, and the restart
// with the same run id resumes to the uninterrupted run's adapter. Latency:
// step times with 0, 1 and 10 ms one-way delay on the control plane of ranks
// 1 and 2 (a delaying TCP relay in its own namespace; ring traffic goes
// direct), printed; the adapter must not change with the delay.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Host, NamespaceNetwork, SUBNET } from './netns.js';
import {
  NO_DROPOUT_CONFIG,
  REPO_ROOT,
  TRAIN_FLAGS,
  adapterDifference,
  ensureBuilt,
  initTinyModel,
  lorafleetOk,
  makeTempDir,
  numberedPatternRecords,
  removeDir,
  stepsDone,
  until,
  writeJsonl,
} from './run-helpers.js';

const CLI = join(REPO_ROOT, 'apps', 'coordinator', 'bin', 'lorafleet.js');
const RELAY = join(import.meta.dirname, 'delay-relay.mjs');
const PORT = 29500;
const RELAY_ADDRESS = `${SUBNET}.100`;
// The default: 2 s (the floor) is too tight for a 2-core machine shared by several test runs.
const HEARTBEAT_TIMEOUT = 5;

let dir: string;
let model: string;
let data: string;
let keys: string;
const net = new NamespaceNetwork(`lf${process.pid % 100_000}`);
let hosts: Host[];
let relayHost: Host;
const children: ChildProcess[] = [];

beforeAll(async () => {
  await ensureBuilt();
  dir = await makeTempDir('netns');
  model = await initTinyModel(dir, 'model', 0, NO_DROPOUT_CONFIG);
  data = await writeJsonl(join(dir, 'train.jsonl'), numberedPatternRecords(40));
  keys = join(dir, 'keys');
  await lorafleetOk(['keys', '--out', keys, '--name', 'job']);
  await net.create(['h0', 'h1', 'h2']);
  await net.create(['relay'], 100);
  hosts = net.hosts.slice(0, 3);
  relayHost = net.hosts[3]!;
  await net.checkReachable(hosts[0]!, PORT);
  await net.checkReachable(relayHost, PORT);
}, 120_000);

afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
});

afterAll(async () => {
  await net.remove();
  await removeDir(dir);
});

interface Task {
  child: ChildProcess;
  output: () => string;
  done: Promise<{ code: number | null; output: string; at: number }>;
}

/** A process in a host's namespace. */
function inHost(host: Host, args: string[], env: Record<string, string> = {}): Task {
  const child = spawn('ip', ['netns', 'exec', host.ns, process.execPath, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LORAFLEET_DEBUG: '', ...env },
  });
  children.push(child);
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (output += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (output += s));
  const done = new Promise<{ code: number | null; output: string; at: number }>((resolve) =>
    child.on('close', (code) => resolve({ code, output, at: performance.now() })),
  );
  return { child, output: () => output, done };
}

interface RankOptions {
  out: string;
  steps: number;
  masterAddr?: string;
  runId?: string;
  heartbeatTimeout?: number;
  extra?: string[];
  env?: Record<string, string>;
}

/** `lorafleet train --launcher env` as rank `rank` of 3 in hosts[rank]. */
function rank(rank: number, o: RankOptions): Task {
  return inHost(
    hosts[rank]!,
    [
      CLI,
      'train',
      ...['--model', model, '--data', data, '--out', o.out, '--steps', String(o.steps)],
      ...TRAIN_FLAGS,
      ...[
        '--launcher',
        'env',
        '--heartbeat-timeout',
        String(o.heartbeatTimeout ?? HEARTBEAT_TIMEOUT),
      ],
      ...['--curve-key', join(keys, 'job.key'), '--authorized-keys', join(keys, 'job.pub')],
      ...(o.extra ?? []),
    ],
    {
      RANK: String(rank),
      WORLD_SIZE: '3',
      LOCAL_RANK: '0',
      MASTER_ADDR: o.masterAddr ?? hosts[0]!.address,
      MASTER_PORT: String(PORT),
      ...(o.runId && { TORCHELASTIC_RUN_ID: o.runId }),
      ...o.env,
    },
  );
}

const job = (o: RankOptions) => [0, 1, 2].map((r) => rank(r, o));

/** `promise`; if it fails, the error also carries the last lines each task printed. */
async function explain<T>(tasks: Task[], promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (error) {
    const tails = tasks.map(
      (t, i) => `--- task ${i}:\n${t.output().split('\n').slice(-25).join('\n')}`,
    );
    throw new Error(`${(error as Error).message}\n${tails.join('\n')}`);
  }
}

/** The tasks' exits, or an error after `timeoutMs` (below the test's own timeout, so `explain` can tell). */
async function exits(tasks: Task[], timeoutMs: number) {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`still running after ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([Promise.all(tasks.map((t) => t.done)), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits for every task to exit 0, failing after `timeoutMs` with what each printed. */
async function allOk(tasks: Task[], timeoutMs = 90_000): Promise<string[]> {
  const results = await explain(tasks, exits(tasks, timeoutMs));
  results.forEach((r, i) => expect(r.code, `rank ${i}:\n${r.output}`).toBe(0));
  return results.map((r) => r.output);
}

const STEPS = 16;
const CHECKPOINTS = ['--checkpoint-every', '4'];

describe('hosts in network namespaces, over CURVE, launched with torchrun variables', () => {
  it('trains to the single-process adapter, each rank on its own address', async () => {
    const single = join(dir, 'single');
    await lorafleetOk([
      'train',
      ...['--model', model, '--data', data, '--out', single, '--steps', String(STEPS)],
      ...TRAIN_FLAGS,
    ]);
    const out = join(dir, 'whole');
    const outputs = await allOk(job({ out, steps: STEPS, extra: CHECKPOINTS }));
    expect(outputs[0]).toMatch(/CURVE on: 1 worker key\(s\) admitted/);
    // Every rank found the coordinator at rank 0's address (each namespace holds only its own).
    for (const o of outputs) expect(o).toContain(`coordinator ${hosts[0]!.address}:${PORT}`);
    expect(await adapterDifference(single, out)).toBeLessThanOrEqual(1e-5);
  }, 120_000);

  it('evicts a partitioned worker, goes on, and takes it back with state transfer after the link returns', async () => {
    const out = join(dir, 'partition');
    // Room for the restarted rank to start and join on a loaded machine: a CI
    // run once ended all 30 steps of an earlier version before it was back, and
    // one of 60 steps (2026-12-06, beside the Python parity tests) timed out the
    // same way: the restarted rank then waits for a coordinator that is gone.
    const steps = 120;
    const slow = { LORAFLEET_FAULT_STEP_DELAY_MS: '150' };
    const tasks = job({ out, steps, env: slow });
    await explain(
      tasks,
      until('step 4', async () => ((await stepsDone(out)) >= 4 ? true : undefined), 60_000),
    );
    await net.link(hosts[2]!, 'down');
    const cut = await tasks[2]!.done;
    // The partitioned worker gives up on its own within the heartbeat timeout (and a margin).
    expect(cut.code, cut.output).not.toBe(0);
    await until(
      'the eviction',
      async () => (/ lost: /.test(tasks[0]!.output()) ? true : undefined),
      20_000,
    );
    const evictedAt = await stepsDone(out);
    await net.link(hosts[2]!, 'up');
    // The engine's restart policy, played by the test: the same command again.
    const back = rank(2, { out, steps, env: slow });
    const [coordinator] = await allOk([tasks[0]!, tasks[1]!, back], 80_000);
    expect(back.output()).toMatch(/loaded the trainer state of step \d+/);
    const metrics = (await readFile(join(out, 'metrics.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { step: number; workers: number });
    expect(metrics).toHaveLength(steps);
    expect(metrics.some((m) => m.step > evictedAt && m.workers === 2)).toBe(true);
    expect(metrics.at(-1)!.workers, coordinator).toBe(3);
  }, 150_000);

  it('workers exit non-zero within the heartbeat timeout when the coordinator dies; the restart resumes', async () => {
    const out = join(dir, 'restarted');
    const runId = `netns-${process.pid}`;
    const slow = { LORAFLEET_FAULT_STEP_DELAY_MS: '150' };
    const first = job({ out, steps: STEPS, runId, extra: CHECKPOINTS, env: slow });
    await explain(
      first,
      until('step 9', async () => ((await stepsDone(out)) >= 9 ? true : undefined), 60_000),
    );
    first[0]!.child.kill('SIGKILL');
    const killedAt = performance.now();
    for (const t of first.slice(1)) {
      const r = await t.done;
      expect(r.code, r.output).not.toBe(0);
      expect(r.output).toMatch(
        new RegExp(`no message from the coordinator .* for ${HEARTBEAT_TIMEOUT} s`),
      );
      // Silence counts from the last heartbeat, at most a second before the kill.
      expect((r.at - killedAt) / 1000).toBeLessThan(HEARTBEAT_TIMEOUT + 3);
    }
    const second = job({ out, steps: STEPS, runId, extra: CHECKPOINTS });
    const [coordinator] = await allOk(second, 60_000);
    expect(coordinator).toMatch(
      new RegExp(`run torchelastic-${runId} restarted .*: resuming from`),
    );
    expect(coordinator).toMatch(/resuming from .*step-0000(04|08) at step (4|8)/);
    expect(await adapterDifference(join(dir, 'whole'), out)).toBe(0);
  }, 150_000);

  it('reports the step time at 0, 1 and 10 ms one-way delay on the control plane; the adapter does not change', async () => {
    const times: Record<string, number> = {};
    const all: Record<string, number[]> = {};
    for (const delay of [0, 1, 10]) {
      const out = join(dir, `delay-${delay}`);
      // Rank 0's worker shares the coordinator's host; ranks 1 and 2 reach it
      // through the relay, started once the coordinator listens.
      const first = rank(0, { out, steps: 8 });
      await until(
        'the coordinator',
        async () => (/waiting for workers: 0\/3/.test(first.output()) ? true : undefined),
        30_000,
      );
      const relay = inHost(relayHost, [
        RELAY,
        RELAY_ADDRESS,
        String(PORT),
        hosts[0]!.address,
        String(PORT),
        String(delay),
      ]);
      await until(
        'the relay',
        async () => (/relay ready/.test(relay.output()) ? true : undefined),
        10_000,
      );
      const ranks = [
        first,
        ...[1, 2].map((r) => rank(r, { out, steps: 8, masterAddr: RELAY_ADDRESS })),
      ];
      const results = await explain([...ranks, relay], exits(ranks, 40_000));
      relay.child.kill('SIGKILL');
      results.forEach((r, i) =>
        expect(r.code, `rank ${i}:\n${r.output}\nrelay:\n${relay.output()}`).toBe(0),
      );
      const seconds = (await readFile(join(out, 'metrics.jsonl'), 'utf8'))
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { seconds: number }).seconds);
      all[delay] = seconds;
      // Steps 2..8: the first carries the ring's connection set-up.
      times[`${delay} ms`] = (1000 * (seconds.at(-1)! - seconds[0]!)) / (seconds.length - 1);
    }
    console.log(
      `netns step time (ms, steps 2-8 mean) by one-way control-plane delay: ${JSON.stringify(times)}; ` +
        `step end times (s): ${JSON.stringify(all)} (a shared, loaded machine: no speed claim)`,
    );
    // The delay changes when messages arrive, never what is computed.
    for (const delay of [1, 10]) {
      expect(await adapterDifference(join(dir, 'delay-0'), join(dir, `delay-${delay}`))).toBe(0);
    }
  }, 150_000);
});
