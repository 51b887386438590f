import { describe, expect, it } from 'vitest';
import { lorafleet } from '../src/generated/lorafleet.js';
import type { lorafleet as pb } from '../src/generated/lorafleet.types.js';
import {
  CHUNK_HEADER_BYTES,
  decodeChunk,
  encodeChunk,
  encodeFloats,
  type DecodeResult,
  type WireDtype,
} from '../src/index.js';
import { sampleChunk } from './samples.js';

function errorOf<T>(result: DecodeResult<T>) {
  if (result.ok) throw new Error('expected a rejection');
  return result.error;
}

describe('chunks', () => {
  it.each<WireDtype>(['f32', 'f16', 'bf16'])(
    'round-trips a %s chunk with its checksum',
    (dtype) => {
      const payload = encodeFloats(new Float32Array([0.5, -1, 3.75, 0]), dtype);
      const sent = sampleChunk({ dtype, payload, phase: 'all-gather' });
      const result = decodeChunk(encodeChunk(sent));
      if (!result.ok) throw new Error(result.error.message);
      const { payload: got, checksum, ...fields } = result.message;
      expect(fields).toEqual(fieldsOf(sent));
      expect(Uint8Array.from(got)).toEqual(Uint8Array.from(payload));
      expect(typeof checksum).toBe('number');
    },
  );

  it('round-trips empty payloads, large steps and no checksum', () => {
    const sent = sampleChunk({ payload: new Uint8Array(0), step: 2 ** 53 - 1 });
    const result = decodeChunk(
      encodeChunk(sent, { checksum: false }),
      {},
      { requireChecksum: false },
    );
    expect(result.ok && result.message.step).toBe(2 ** 53 - 1);
    expect(result.ok && result.message.checksum).toBeUndefined();
  });

  it('rejects a payload that is not whole elements of its dtype', () => {
    const props = { ...rawProps(), dtype: lorafleet.v1.WireDtype.WIRE_DTYPE_F32 };
    props.payload = new Uint8Array(7);
    const error = errorOf(decodeChunk(unchecked(props), {}, { requireChecksum: false }));
    expect(error.kind).toBe('invalid');
    expect(error.message).toContain('not whole f32 elements');
    props.dtype = lorafleet.v1.WireDtype.WIRE_DTYPE_F16;
    expect(errorOf(decodeChunk(unchecked(props), {}, { requireChecksum: false })).kind).toBe(
      'invalid',
    );
  });

  it('rejects a corrupted payload by its checksum', () => {
    const bytes = Uint8Array.from(encodeChunk(sampleChunk()));
    const at = bytes.length - 3; // inside the payload, the last field
    bytes[at] = (bytes[at] ?? 0) ^ 0x10;
    expect(errorOf(decodeChunk(bytes)).kind).toBe('checksum');
  });

  it('checks the frame size before parsing', () => {
    const payload = new Uint8Array(4096);
    const bytes = encodeChunk(sampleChunk({ payload }));
    const error = errorOf(decodeChunk(bytes, { maxChunkPayloadBytes: 1024 }));
    expect(error.kind).toBe('too-large');
    expect(error.message).toContain(`exceeds ${1024 + CHUNK_HEADER_BYTES}`);
    // Just under the frame bound but over the payload bound: caught after parsing.
    const near = encodeChunk(sampleChunk({ payload: new Uint8Array(1100) }));
    expect(errorOf(decodeChunk(near, { maxChunkPayloadBytes: 1024 })).message).toContain(
      'chunk.payload of 1100 bytes exceeds 1024',
    );
  });

  it.each<[string, Partial<pb.v1.Chunk.$Properties>, string]>([
    ['an unknown phase', { phase: 0 }, 'chunk.phase'],
    ['an unknown dtype', { dtype: 9 as pb.v1.WireDtype }, 'chunk.dtype'],
    ['an index past the largest ring', { index: 5000 }, 'chunk.index'],
    ['a sender past the largest ring', { senderRank: 1024 }, 'chunk.senderRank'],
    ['an empty run id', { runId: '' }, 'chunk.runId'],
    ['a run id of 1000 characters', { runId: 'r'.repeat(1000) }, 'chunk.runId'],
  ])('rejects %s, naming the field', (_, override, field) => {
    const bytes = unchecked({ ...rawProps(), ...override });
    const error = errorOf(decodeChunk(bytes, {}, { requireChecksum: false }));
    expect(error.kind).toBe('invalid');
    expect(error.message).toContain(field);
  });

  it('refuses to encode an invalid chunk', () => {
    expect(() => encodeChunk(sampleChunk({ payload: new Uint8Array(3) }))).toThrow(/not whole/);
    expect(() => encodeChunk(sampleChunk({ step: -1 }))).toThrow(/chunk\.step/);
  });

  it('rejects a frame without a checksum unless told not to require one', () => {
    const bytes = encodeChunk(sampleChunk(), { checksum: false });
    expect(errorOf(decodeChunk(bytes)).message).toContain('no checksum');
    expect(decodeChunk(bytes, {}, { requireChecksum: false }).ok).toBe(true);
  });

  it('rejects every truncation of a checksummed chunk', () => {
    const bytes = encodeChunk(sampleChunk());
    for (let n = 0; n < bytes.length; n++) {
      const result = decodeChunk(bytes.subarray(0, n));
      expect(result.ok, `cut at ${n}`).toBe(false);
    }
  });
});

function fieldsOf(chunk: ReturnType<typeof sampleChunk>) {
  const { payload: _payload, ...fields } = chunk;
  return fields;
}

/** A frame from the generated encoder: no checksum, any field values. */
function unchecked(props: pb.v1.Chunk.$Properties): Uint8Array {
  return lorafleet.v1.Chunk.encode(props).finish();
}

function rawProps(): pb.v1.Chunk.$Properties {
  return {
    runId: 'r',
    step: 1,
    phase: lorafleet.v1.Phase.PHASE_REDUCE_SCATTER,
    index: 0,
    senderRank: 0,
    dtype: lorafleet.v1.WireDtype.WIRE_DTYPE_F32,
    payload: new Uint8Array(8),
  };
}
