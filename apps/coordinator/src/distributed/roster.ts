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
    super(members.map((m) => `${m.name}: ${m.lostReason}`).join('; '));
  }
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
  /** Silence it announced for its computation, allowed on top of the heartbeat timeout. */
  quietMs: number;
  /** When it was welcomed (performance.now()), for the build deadline. */
  welcomedAt: number;
  lostReason?: string;
}

/** A welcomed worker must load its replica within this. */
const BUILD_TIMEOUT_MS = 600_000;

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
      quietMs: 0,
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
   * Members to declare lost, with why: ready or ring members silent past the
   * heartbeat timeout plus the compute time they announced, and welcomed ones
   * that never finished loading.
   */
  overdue(heartbeatTimeoutMs: number): { member: Member; reason: string }[] {
    const now = performance.now();
    const out: { member: Member; reason: string }[] = [];
    for (const m of this.all) {
      const silent = now - m.lastSeen;
      // An in-process worker shares our event loop: its silence is ours.
      if (m.inProcess) continue;
      if (
        (m.status === 'active' || m.status === 'ready') &&
        silent > heartbeatTimeoutMs + m.quietMs
      ) {
        const allowed = m.quietMs > 0 ? `, ${m.quietMs / 1000} s of it announced for compute` : '';
        out.push({
          member: m,
          reason: `silent for ${(silent / 1000).toFixed(1)} s (heartbeat timeout${allowed})`,
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
