// What a message from a known worker does to its member: an error loses the
// worker or fails the run, a heartbeat updates its liveness and progress (and
// is consumed here: queued, a long step's heartbeats would fill the inbox),
// anything else waits in its bounded inbox for the training loop.
import type { ControlBody } from '@lorafleet/protocol';
import type { Member } from './roster.js';

/** Messages a worker may have waiting; more is a broken or hostile peer. */
const INBOX_LIMIT = 256;

/** What the fleet does next: wake its waits, lose the worker, or fail the run. */
export type Delivery =
  | { kind: 'delivered' }
  /** A heartbeat showed that a building worker is ready. */
  | { kind: 'ready' }
  | { kind: 'lost'; reason: string }
  | { kind: 'fail'; message: string };

/** Updates `member` with `body`. */
export function deliver(member: Member, body: ControlBody): Delivery {
  member.lastSeen = performance.now();
  if (body.case === 'error') {
    const message = `${member.name} failed (${body.value.code}): ${body.value.message}`;
    // An internal failure loses one worker; a diverged replica, a config
    // mismatch or bad data is a bug that no restart fixes.
    if (body.value.code === 'internal') return { kind: 'lost', reason: message };
    if (body.value.code === 'data') {
      const fix = 'fix the data and run again';
      return { kind: 'fail', message: `a data error, which no restart fixes: ${message}; ${fix}` };
    }
    return { kind: 'fail', message };
  }
  if (body.case === 'heartbeat') {
    member.lastHeartbeatMs = Date.now();
    member.rssBytes = body.value.rssBytes;
    const { progress, stalledMs, computeLimitMs: limitMs, warmingUp } = body.value;
    member.compute = { progress, stalledMs, limitMs, warmingUp, at: performance.now() };
    if (member.status === 'building' && body.value.state !== 'loading') {
      member.status = 'ready';
      return { kind: 'ready' };
    }
    return { kind: 'delivered' };
  }
  if (member.inbox.length >= INBOX_LIMIT) {
    return { kind: 'lost', reason: `more than ${INBOX_LIMIT} unread messages (flooding)` };
  }
  member.inbox.push(body);
  return { kind: 'delivered' };
}
