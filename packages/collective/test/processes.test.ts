// The ring across real processes: each rank a forked node process importing the
// built package over real tcp sockets, as workers run it.
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { WireDtype } from '@lorafleet/protocol';
import { ensureBuilt } from './build.js';
import { expectBitwiseIdentical, expectClose, inputs, naiveSum } from './helpers.js';

const script = join(import.meta.dirname, 'fixtures', 'rank.mjs');

interface Reply {
  ok: boolean;
  error?: string;
  endpoint?: string;
  buffer?: Float32Array;
}

class RankProcess {
  private next = 0;
  private readonly pending = new Map<number, (reply: Reply) => void>();
  private stderr = '';
  // execArgv: [] drops vitest's `--conditions source`, so the child loads dist/ like a worker.
  readonly child: ChildProcess = fork(script, [], {
    serialization: 'advanced',
    stdio: 'pipe',
    execArgv: [],
  });

  constructor() {
    this.child.stderr?.on('data', (data: Buffer) => (this.stderr += data.toString()));
    this.child.on('message', (reply: Reply & { id: number }) => {
      this.pending.get(reply.id)?.(reply);
      this.pending.delete(reply.id);
    });
    this.child.on('exit', (code, signal) => {
      const error = `rank process exited (${signal ?? code}): ${this.stderr.slice(-2000)}`;
      for (const resolve of this.pending.values()) resolve({ ok: false, error });
      this.pending.clear();
    });
  }

  call(type: string, args: object = {}): Promise<Reply> {
    if (!this.child.connected) return Promise.resolve({ ok: false, error: 'rank process is gone' });
    const id = this.next++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.child.send({ id, type, ...args });
    });
  }
}

let ranks: RankProcess[] = [];

async function spawnRing(n: number, options: object = {}): Promise<RankProcess[]> {
  ranks = Array.from({ length: n }, () => new RankProcess());
  const bound = await Promise.all(
    ranks.map((p, rank) => p.call('bind', { rank, worldSize: n, options })),
  );
  for (const reply of bound) if (!reply.ok) throw new Error(reply.error);
  const endpoints = bound.map((b) => b.endpoint!);
  await Promise.all(ranks.map((p) => p.call('connect', { endpoints })));
  return ranks;
}

async function reduce(
  step: number,
  sent: Float32Array[],
  wireDtype: WireDtype = 'f32',
): Promise<Float32Array[]> {
  const replies = await Promise.all(
    ranks.map((p, r) => p.call('reduce', { buffer: sent[r], step, runId: 'processes', wireDtype })),
  );
  for (const reply of replies) if (!reply.ok) throw new Error(reply.error);
  return replies.map((r) => r.buffer!);
}

beforeAll(() => ensureBuilt(), 120_000);

afterEach(async () => {
  await Promise.all(ranks.map((p) => p.call('close')));
  for (const p of ranks) p.child.kill();
  ranks = [];
});

describe('a ring of 3 processes', () => {
  it('sums bitwise identically across processes, f32 and f16 on the wire', async () => {
    await spawnRing(3);
    for (const [step, length] of [0, 1, 1001, 100_003].entries()) {
      const sent = inputs(3, length, 77 + length);
      const results = await reduce(step, sent);
      expectBitwiseIdentical(results);
      expectClose(results[0]!, naiveSum(sent), sent, 3 * 2 ** -24);
    }
    const small = inputs(3, 1001, 5).map((b) => b.map((x) => x / 1000));
    const halves = await reduce(10, small, 'f16');
    expectBitwiseIdentical(halves);
    expectClose(halves[0]!, naiveSum(small), small, 3 * 2 ** -10);
  });
});

describe('a rank process that dies', () => {
  it('makes its neighbour reject after the timeout, naming it', async () => {
    await spawnRing(2, { timeoutMs: 400 });
    ranks[1]!.child.kill('SIGKILL');
    const reply = await ranks[0]!.call('reduce', {
      buffer: new Float32Array(1000),
      step: 0,
      runId: 'processes',
    });
    expect(reply.ok).toBe(false);
    expect(reply.error).toMatch(
      /rank 0: timed out after 400 ms waiting for .* from rank 1 \(tcp:\/\/127\.0\.0\.1:\d+\)/,
    );
  });
});
