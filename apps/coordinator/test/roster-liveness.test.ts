// The coordinator's liveness rules (roster.ts) on members whose heartbeats,
// from the workers' heartbeat threads, report compute progress: silence is
// a death with no allowance for compute, and a micro-batch without progress
// past the step timeout is a hang, except a worker's first (warm-up) one.
import { describe, expect, it } from 'vitest';
import type { InProcessWorker } from '../src/distributed/in-process.js';
import { type ComputeReport, type Member, Roster } from '../src/distributed/roster.js';

const HEARTBEAT_TIMEOUT_MS = 2000;

/** A ring member that beat just now, with this compute report. */
function member(roster: Roster, compute: Partial<ComputeReport>, status = 'active'): Member {
  const m = roster.add(roster.nextId(), `worker ${roster.all.length}`);
  const now = performance.now();
  m.status = status as Member['status'];
  m.lastSeen = now;
  m.compute = { progress: 7, stalledMs: 0, limitMs: 0, warmingUp: false, at: now, ...compute };
  return m;
}

const reasons = (roster: Roster, stepTimeoutMs?: number) =>
  roster
    .overdue({ heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, stepTimeoutMs })
    .map(({ member: m, reason }) => `${m.name}: ${reason}`);

describe('liveness with heartbeats from a thread', () => {
  it('takes a micro-batch stalled past --step-timeout for a hang, and says so', () => {
    const roster = new Roster();
    member(roster, { stalledMs: 3500, limitMs: 60_000 });
    member(roster, { stalledMs: 2500, limitMs: 60_000 });
    expect(reasons(roster, 3000)).toEqual([
      expect.stringMatching(
        /^worker 0: hung: its micro-batch made no progress for 3\.5 s \(--step-timeout 3\), while its heartbeat thread lives \(progress counter 7\)$/,
      ),
    ]);
  });

  it("uses the worker's own limit without --step-timeout", () => {
    const roster = new Roster();
    member(roster, { stalledMs: 31_000, limitMs: 30_000 });
    member(roster, { stalledMs: 29_000, limitMs: 30_000 });
    expect(reasons(roster)).toEqual([
      expect.stringMatching(/^worker 0: hung: .* \(its own limit of 30 s, from its measured/),
    ]);
  });

  it("never cuts a worker's first micro-batch short with a shorter --step-timeout", () => {
    const roster = new Roster();
    member(roster, { stalledMs: 10_000, limitMs: 300_000, warmingUp: true });
    expect(reasons(roster, 3000)).toEqual([]);
    member(roster, { stalledMs: 301_000, limitMs: 300_000, warmingUp: true });
    expect(reasons(roster, 3000)).toEqual([
      expect.stringMatching(
        /^worker 1: hung: .* \(its own limit of 300 s for a first micro-batch\)/,
      ),
    ]);
  });

  it('ignores stalls outside a micro-batch, of members outside the ring, and of the in-process worker', () => {
    const roster = new Roster();
    // Between micro-batches (an all-reduce waiting on a peer): limit 0.
    member(roster, { stalledMs: 0, limitMs: 0 }).lastSeen -= 1000;
    member(roster, { stalledMs: 50_000, limitMs: 30_000 }, 'ready');
    const inProcess = member(roster, { stalledMs: 50_000, limitMs: 30_000 });
    inProcess.inProcess = {} as InProcessWorker;
    inProcess.lastSeen -= 60_000;
    expect(reasons(roster, 3000)).toEqual([]);
  });

  it('loses a silent member after the heartbeat timeout, with no allowance for compute', () => {
    const roster = new Roster();
    // Silent in the middle of a micro-batch with a 300 s limit: a stopped process.
    member(roster, { stalledMs: 0, limitMs: 300_000 }).lastSeen -= HEARTBEAT_TIMEOUT_MS + 100;
    expect(reasons(roster, 60_000)).toEqual([
      expect.stringMatching(/^worker 0: silent for 2\.1 s \(heartbeat timeout\)$/),
    ]);
  });

  it("does not count the coordinator's own pause as its members' silence, only what came before it", () => {
    const roster = new Roster();
    const now = performance.now();
    // Silent for 2.5 s, 2 s of it while the coordinator was paused: 0.5 s of its own.
    // Its micro-batch: 20 s stalled when it last beat, 11 s ago; 29 s of its own, under 30.
    const quiet = member(roster, { stalledMs: 20_000, limitMs: 30_000 });
    quiet.lastSeen -= 2500;
    quiet.compute.at -= 11_000;
    // Silent for 4.5 s: 2.5 s of its own, past the timeout.
    member(roster, {}).lastSeen -= 4500;
    // It beat 0.5 s ago: the pause moves no clock past now.
    const recent = member(roster, {});
    recent.lastSeen -= 500;
    expect(reasons(roster)).toEqual([
      expect.stringMatching(/^worker 0: silent for 2\.5 s/),
      expect.stringMatching(/^worker 1: silent for 4\.5 s/),
    ]);
    roster.excuse(2000, now);
    expect(recent.lastSeen).toBe(now);
    expect(reasons(roster)).toEqual([expect.stringMatching(/^worker 1: silent for 2\.\d s/)]);
  });
});
