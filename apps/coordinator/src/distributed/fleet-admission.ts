// Who gets in: the coordinator's answer to a Hello. A spawned fleet takes
// only the processes it started (by pid); a --listen fleet takes any worker
// of this run (or of none yet) whose CURVE key is admitted, up to its
// workers plus as many standbys. Everything else is refused with a reason
// the worker prints before it exits.
import type { CurveAuthenticator } from '@lorafleet/collective';
import { type Hello } from '@lorafleet/protocol';
import { UNASSIGNED_RUN } from '@lorafleet/worker';
import type { Membership } from './fleet.js';
import type { Member, Roster } from './roster.js';

export interface AdmissionContext {
  roster: Roster;
  membership: Membership;
  runId: string;
  auth: CurveAuthenticator | undefined;
  /** The run is finishing: nobody new gets in. */
  stopping: boolean;
}

export type Admission =
  /** A repeated Hello from a member we already have. */
  | { kind: 'known' }
  | { kind: 'refuse'; reason: string }
  /** The member this Hello makes (listen) or completes (spawn): identity and hello are set. */
  | { kind: 'admit'; member: Member };

/** Decides on a Hello from socket `identity`, sent under `runId`. */
export function admit(
  context: AdmissionContext,
  identity: Buffer,
  hello: Hello,
  runId: string,
): Admission {
  const { roster, membership, auth } = context;
  const refuse = (reason: string): Admission => ({ kind: 'refuse', reason });
  if (runId !== context.runId && runId !== UNASSIGNED_RUN) {
    return refuse(`it belongs to run ${runId}, not ${context.runId}`);
  }
  if (roster.all.some((m) => m.identity?.equals(identity))) return { kind: 'known' };
  if (auth && !auth.allows(hello.curvePublicKey)) {
    return refuse('its curvePublicKey is not in --authorized-keys');
  }
  if (context.stopping) return refuse('the run is finishing');
  let member: Member | undefined;
  if (membership.kind !== 'listen') {
    member = roster.all.find(
      (m) => (m.process ?? m.inProcess)?.pid === hello.pid && m.status === 'starting',
    );
    if (!member) return refuse('it is not a worker this run spawned');
    member.status = 'hello';
  } else {
    const live = roster.live().length;
    // As many standbys as ring members: enough to replace them all, bounded.
    if (live >= 2 * membership.workers) {
      return refuse(
        `the run already has its ${membership.workers} workers and ${membership.workers} standbys`,
      );
    }
    const id = roster.nextId();
    const standby = live >= membership.workers ? ', standby' : '';
    member = roster.add(id, `worker ${id} (${hello.workerId}${standby})`);
  }
  Object.assign(member, { identity, hello, lastSeen: performance.now() });
  return { kind: 'admit', member };
}

/**
 * Who sent a message: the member whose main socket it came from, or, for a
 * heartbeat from a worker's heartbeat thread (a socket of its own, behind
 * the same CURVE authentication), the live member whose Hello gave its heartbeatId.
 */
export function senderOf(
  roster: Roster,
  identity: Buffer,
  heartbeatId: string | undefined,
): Member | undefined {
  const member = roster.all.find((m) => m.identity?.equals(identity));
  if (member || !heartbeatId) return member;
  return roster.all.find(
    (m) => m.hello?.heartbeatId === heartbeatId && m.status !== 'lost' && m.status !== 'left',
  );
}
