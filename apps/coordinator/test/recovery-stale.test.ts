// What recovery discards as stale after an abort is derived from the
// protocol's request/reply pairs: a reply added there is discarded here too.
import { REPLY_TO } from '@lorafleet/protocol';
import { describe, expect, it } from 'vitest';
import { STALE } from '../src/distributed/recovery.js';

describe('stale replies after an aborted exchange', () => {
  it('include the reply of every coordinator request', () => {
    for (const [request, reply] of Object.entries(REPLY_TO)) {
      expect(STALE, `${request} -> ${reply}`).toContain(reply);
    }
  });

  it('include evalDone (an eval shard answered after its step was aborted)', () => {
    expect(STALE).toContain('evalDone');
  });

  it('are replies only: never a request, a heartbeat or an error', () => {
    const requests: string[] = Object.keys(REPLY_TO);
    for (const kind of STALE) expect(requests).not.toContain(kind);
    expect(STALE).not.toContain('heartbeat');
    expect(STALE).not.toContain('error');
    expect([...STALE].sort()).toEqual(
      ['checkpointDone', 'evalDone', 'regrouped', 'stepDone', 'trainerState'].sort(),
    );
  });
});
