// The workers a coordinator knows, in order of arrival: their state in the
// run's life (starting -> hello -> building -> ready -> active -> lost/left),
// their place in the ring, and which of them have gone quiet for too long.
import type { ControlBody, Hello } from '@lorafleet/protocol';
import type { InProcessWorker } from './in-process.js';
import type { WorkerProcess } from './worker-process.js';

/** Why a run stopped: a worker failed in a way no restart fixes, or a wait ran out. */
export class FleetError extends Error {
  override name = 'FleetError';
}

/** Workers were lost while the coordinator waited on them; the step must be aborted. */
export class MembersLost extends Error {
  override name = 'MembersLost';
  constructor(readonly members: Member[]) {
    super(groupByReason(members));
  }
}

/** "worker 0 (pid 1), worker 1 (pid 2): the reason; worker 2 (pid 3): another": one reason said once. */
function groupByReason(members: readonly Member[]): string {
  const byReason = new Map<string, string[]>();
  for (const m of members) {
    const reason = m.lostReason ?? 'lost';
    byReason.set(reason, [...(byReason.get(reason) ?? []), m.name]);
  }
  return [...byReason].map(([reason, names]) => `${names.join(', ')}: ${reason}`).join('; ');
}

/**
 * starting: spawned, no Hello yet; hello: said Hello, not yet welcomed;
 * building: welcomed, loading its replica; ready: loaded, not in the ring;
 * active: in the ring; lost: gone (dead, silent or failed); left: shut down.
 */
export type MemberStatus = 'starting' | 'hello' | 'building' | 'ready' | 'active' | 'lost' | 'left';

export interface Member {
  /** Unique in this run, in order of arrival. */
  readonly id: number;
  /** Spawned workers: the place it fills (a replacement takes the lost worker's slot and GPU). */
  slot: number;
  /** "worker 3 (pid 4242)" or "worker 3 (host:pid)". */
  name: string;
  status: MemberStatus;
  /** Rank in the current ring; -1 outside it. */
  rank: number;
  process?: WorkerProcess;
  /** The worker that runs in the coordinator's own process (a fleet of one). */
  inProcess?: InProcessWorker;
  identity?: Buffer;
  hello?: Hello;
  inbox: ControlBody[];
  /** performance.now() of its last message, and the wall clock of its last heartbeat. */
  lastSeen: number;
  lastHeartbeatMs: number;
  rssBytes: number;
  /** Compute progress from its last heartbeat (and when that arrived), for the step timeout. */
  compute: ComputeReport;
  /** When it was welcomed (performance.now()), for the build deadline. */
  welcomedAt: number;
  lostReason?: string;
}

/** A heartbeat's compute progress, as the coordinator received it. */
export interface ComputeReport {
  progress: number;
  /** How long progress had not moved while a micro-batch computed (0: not computing). */
  stalledMs: number;
  /** The worker's own limit for one micro-batch (0: not computing). */
  limitMs: number;
  /** Its first micro-batch (kernels compile): only its own limit applies. */
  warmingUp: boolean;
  /** performance.now() when the heartbeat arrived. */
  at: number;
}

/** The timeouts of liveness. */
export interface LivenessLimits {
  /** Silence after which a ready or ring member is lost. */
  heartbeatTimeoutMs: number;
  /** A micro-batch whose progress stalls this long is hung; undefined: the worker's own limit. */
  stepTimeoutMs: number | undefined;
}

/** A welcomed worker must load its replica within this. */
const BUILD_TIMEOUT_MS = 600_000;
/** A loading worker beats every second; this much silence (a blocked event loop) is a hang. */
const LOADING_SILENCE_MS = 60_000;

export class Roster {
  /** Every member ever seen, in order of arrival. */
  readonly all: Member[] = [];
  private ids = 0;

  nextId(): number {
    return this.ids++;
  }

  add(id: number, name: string, slot = -1): Member {
    const member: Member = {
      id,
      slot,
      name,
      status: 'hello',
      rank: -1,
      inbox: [],
      lastSeen: performance.now(),
      lastHeartbeatMs: 0,
      rssBytes: 0,
      compute: { progress: 0, stalledMs: 0, limitMs: 0, warmingUp: false, at: 0 },
      welcomedAt: 0,
    };
    this.all.push(member);
    return member;
  }

  /** Members in the ring, by rank. */
  active(): Member[] {
    return this.all.filter((m) => m.status === 'active').sort((a, b) => a.rank - b.rank);
  }

  /** Members that said Hello and wait for Welcome. */
  newcomers(): Member[] {
    return this.all.filter((m) => m.status === 'hello');
  }

  /** Members with a loaded replica, waiting to enter the ring. */
  ready(): Member[] {
    return this.all.filter((m) => m.status === 'ready');
  }

  /** Members that are or may become part of the ring. */
  live(): Member[] {
    return this.all.filter((m) => !['lost', 'left'].includes(m.status));
  }

  /** A welcomed member loads its replica; its first heartbeat then makes it ready. */
  welcomed(m: Member): void {
    m.status = 'building';
    m.welcomedAt = performance.now();
  }

  /** Makes `members` the ring, in this order (ranks 0..n-1); everyone else leaves it. */
  setRing(members: readonly Member[]): void {
    for (const m of this.all) if (m.status === 'active') m.rank = -1;
    for (const [rank, m] of members.entries()) {
      m.status = 'active';
      m.rank = rank;
    }
    for (const m of this.all) if (m.status === 'active' && m.rank < 0) m.status = 'ready';
  }

  /**
   * The coordinator itself did not run for `pausedMs` (stopped, starved, a
   * stalled disk write): what the workers sent meanwhile still waits in the
   * socket, so that time is not their silence. Every clock that liveness
   * reads moves on by the pause, never past `now`.
   */
  excuse(pausedMs: number, now: number): void {
    const later = (t: number) => Math.min(now, t + pausedMs);
    for (const m of this.all) {
      m.lastSeen = later(m.lastSeen);
      m.compute.at = later(m.compute.at);
      if (m.welcomedAt > 0) m.welcomedAt = later(m.welcomedAt);
    }
  }

  /**
   * Members to declare lost, with why: ready or ring members silent past the
   * heartbeat timeout (their heartbeats come from a thread that compute does
   * not block), ring members whose micro-batch made no progress within the
   * step timeout, and welcomed ones that never finished loading. With
   * `strangers` (external workers: anyone may connect), also welcomed ones
   * that show no sign of loading.
   */
  overdue(limits: LivenessLimits, strangers = false): { member: Member; reason: string }[] {
    const { heartbeatTimeoutMs } = limits;
    const now = performance.now();
    const out: { member: Member; reason: string }[] = [];
    for (const m of this.all) {
      const silent = now - m.lastSeen;
      // An in-process worker shares our event loop: its silence and its hangs are ours.
      if (m.inProcess) continue;
      const stall = m.status === 'active' ? stalled(m.compute, limits, now) : undefined;
      if ((m.status === 'active' || m.status === 'ready') && silent > heartbeatTimeoutMs) {
        out.push({
          member: m,
          reason: `silent for ${(silent / 1000).toFixed(1)} s (heartbeat timeout)`,
        });
      } else if (stall) {
        out.push({ member: m, reason: stall });
      } else if (
        strangers &&
        m.status === 'building' &&
        m.lastSeen <= m.welcomedAt &&
        now - m.welcomedAt > 2 * heartbeatTimeoutMs
      ) {
        // A worker's first "loading" heartbeat leaves as soon as Welcome arrives.
        out.push({
          member: m,
          reason: `never became ready: no heartbeat within ${(2 * heartbeatTimeoutMs) / 1000} s of its Welcome (not a lorafleet worker, or hung)`,
        });
      } else if (strangers && m.status === 'building' && silent > LOADING_SILENCE_MS) {
        out.push({
          member: m,
          reason: `silent for ${(silent / 1000).toFixed(1)} s while loading its replica`,
        });
      } else if (m.status === 'building' && now - m.welcomedAt > BUILD_TIMEOUT_MS) {
        out.push({
          member: m,
          reason: `did not load its replica within ${BUILD_TIMEOUT_MS / 1000} s`,
        });
      }
    }
    return out;
  }
}

/**
 * Why a member's computation counts as hung, or undefined: a micro-batch in
 * progress (its limit is set) whose progress has not moved for longer than
 * --step-timeout, or than the worker's own limit without one or in the
 * worker's first micro-batch (a warm-up that a short --step-timeout would cut).
 */
function stalled(c: ComputeReport, limits: LivenessLimits, now: number): string | undefined {
  if (c.limitMs === 0) return undefined;
  const stalledMs = c.stalledMs + (now - c.at);
  const own = limits.stepTimeoutMs === undefined || c.warmingUp;
  const limitMs = own ? c.limitMs : limits.stepTimeoutMs!;
  if (stalledMs <= limitMs) return undefined;
  const which = own
    ? `its own limit of ${(limitMs / 1000).toFixed(0)} s` +
      (c.warmingUp
        ? ' for a first micro-batch'
        : ', from its measured micro-batches; set --step-timeout to change it')
    : `--step-timeout ${limitMs / 1000}`;
  return (
    `hung: its micro-batch made no progress for ${(stalledMs / 1000).toFixed(1)} s (${which}), ` +
    `while its heartbeat thread lives (progress counter ${c.progress})`
  );
}
