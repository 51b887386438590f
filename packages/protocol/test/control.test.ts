import { describe, expect, it } from 'vitest';
import { lorafleet } from '../src/generated/lorafleet.js';
import type { lorafleet as pb } from '../src/generated/lorafleet.types.js';
import {
  PROTOCOL_VERSION,
  decodeControl,
  encodeControl,
  type DecodeResult,
  type ControlMessage,
} from '../src/index.js';
import { RUN, controls } from './samples.js';

function errorOf<T>(result: DecodeResult<T>) {
  if (result.ok) throw new Error('expected a rejection');
  return result.error;
}

/** Encodes raw generated properties, bypassing encodeControl's own checks. */
function raw(props: pb.v1.ControlMessage.$Properties): Uint8Array {
  return lorafleet.v1.ControlMessage.encode(props).finish();
}

describe('control messages', () => {
  it.each(controls.map((m) => [m.body.case, m] as const))('round-trips %s', (_, msg) => {
    const result = decodeControl(encodeControl(msg));
    expect(result).toEqual({ ok: true, message: { protocolVersion: PROTOCOL_VERSION, ...msg } });
  });

  it('rejects another protocol version, saying which', () => {
    const bytes = encodeControl({ ...controls[4]!, protocolVersion: PROTOCOL_VERSION + 1 });
    const error = errorOf(decodeControl(bytes));
    expect(error.kind).toBe('version');
    expect(error.message).toContain(`protocol version ${PROTOCOL_VERSION + 1}`);
    expect(errorOf(decodeControl(raw({ runId: RUN, commit: { step: 1 } }))).kind).toBe('version');
  });

  it('checks the size before parsing', () => {
    const bytes = encodeControl(controls[0]!);
    const error = errorOf(decodeControl(bytes, { maxControlBytes: bytes.length - 1 }));
    expect(error.kind).toBe('too-large');
    // 2 MiB of garbage is refused on size alone, whatever it contains.
    expect(errorOf(decodeControl(new Uint8Array(2 << 20).fill(0xff))).kind).toBe('too-large');
  });

  it('rejects every truncation of every message without throwing', () => {
    for (const msg of controls) {
      const bytes = encodeControl(msg);
      for (let n = 0; n < bytes.length; n++) {
        expect(decodeControl(bytes.subarray(0, n)).ok, `${msg.body.case} cut at ${n}`).toBe(false);
      }
    }
  });

  it('rejects a missing or unknown body', () => {
    const none = raw({ protocolVersion: PROTOCOL_VERSION, runId: RUN });
    expect(errorOf(decodeControl(none)).message).toContain('body is missing or of an unknown type');
    // A newer sender's body (field 30, length-delimited: tag varint 0xf2 0x01) is an unknown
    // field to this build.
    const unknown = new Uint8Array([...none, 0xf2, 0x01, 2, 0x08, 0x01]);
    expect(errorOf(decodeControl(unknown)).kind).toBe('invalid');
  });

  it.each<[string, pb.v1.ControlMessage.$Properties, string]>([
    ['an empty run id', { commit: { step: 1 }, runId: '' }, 'runId'],
    [
      'rank >= worldSize',
      { welcome: { rank: 3, worldSize: 3, ringEndpoints: ['a', 'b', 'c'] } },
      'welcome.rank',
    ],
    [
      'endpoints != worldSize',
      { welcome: { rank: 0, worldSize: 2, ringEndpoints: ['a'] } },
      'welcome.ringEndpoints',
    ],
    [
      'a zero micro-batch',
      { stepPlan: { step: 1, sampleIds: [1], microBatchSize: 0 } },
      'stepPlan.microBatchSize',
    ],
    [
      'a step past 2^53',
      { commit: { step: '18014398509481984' as unknown as number } },
      'commit.step',
    ],
    ['missing timings', { stepDone: { step: 1, lossSum: 1 } }, 'stepDone.timings'],
    [
      'an unknown worker state',
      { heartbeat: { sentAtMs: 1, state: 99 as pb.v1.WorkerState } },
      'heartbeat.state',
    ],
    [
      'an unknown error code',
      { error: { code: 42 as pb.v1.ErrorCode, message: 'x' } },
      'error.code',
    ],
    ['an empty worker id', { hello: { workerId: '' } }, 'hello.workerId'],
  ])('rejects %s, naming the field', (_, props, field) => {
    const bytes = raw({ protocolVersion: PROTOCOL_VERSION, runId: RUN, ...props });
    const error = errorOf(decodeControl(bytes));
    expect(error.kind).toBe('invalid');
    expect(error.message).toContain(field);
  });

  it('refuses to encode a message the receiver would reject', () => {
    const bad = { runId: RUN, body: { case: 'commit', value: { step: -1 } } } as const;
    expect(() => encodeControl(bad)).toThrow(/commit\.step/);
  });

  it('returns plain data a caller can narrow on', () => {
    const result = decodeControl(encodeControl(controls[1]!));
    if (!result.ok || result.message.body.case !== 'welcome') throw new Error('expected welcome');
    const message: ControlMessage = result.message;
    expect(message.body.case === 'welcome' && message.body.value.ringEndpoints).toHaveLength(3);
  });
});
