import { describe, expect, it } from 'vitest';
import { lorafleet } from '../src/generated/lorafleet.js';
import type { lorafleet as pb } from '../src/generated/lorafleet.types.js';
import {
  CHUNK_HEADER_BYTES,
  crc32,
  crc32Js,
  decodeChunk,
  encodeChunk,
  encodeFloats,
  nativeCrc32,
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
    'round-trip a %s chunk as [header, payload], the payload a view of the input',
    (dtype) => {
      const payload = encodeFloats(new Float32Array([0.5, -1, 3.75, 0]), dtype);
      const sent = sampleChunk({ dtype, payload, phase: 'all-gather' });
      const frames = encodeChunk(sent, { checksum: true });
      expect(frames).toHaveLength(2);
      // No copy on the way out: the payload frame shares the input's memory.
      expect(frames[1].buffer).toBe(payload.buffer);
      expect(frames[1].byteOffset).toBe(payload.byteOffset);
      const result = decodeChunk(frames);
      if (!result.ok) throw new Error(result.error.message);
      const { payload: got, payloadChecksum, ...fields } = result.message;
      expect(fields).toEqual(fieldsOf(sent));
      expect(Uint8Array.from(got)).toEqual(Uint8Array.from(payload));
      expect(payloadChecksum).toBe(crc32(payload));
    },
  );

  it('round-trip empty payloads, large steps and generations, and no payload checksum', () => {
    const sent = sampleChunk({
      payload: new Uint8Array(0),
      step: 2 ** 53 - 1,
      generation: 2 ** 32 - 1,
    });
    const result = decodeChunk(encodeChunk(sent));
    expect(result.ok && result.message.step).toBe(2 ** 53 - 1);
    expect(result.ok && result.message.generation).toBe(2 ** 32 - 1);
    expect(result.ok && result.message.payloadChecksum).toBeUndefined();
  });

  it('rejects a payload that is not whole elements of its dtype', () => {
    const props = { ...rawProps(), dtype: lorafleet.v1.WireDtype.WIRE_DTYPE_F32, payloadBytes: 7 };
    const error = errorOf(decodeChunk([sealed(props), new Uint8Array(7)]));
    expect(error.kind).toBe('invalid');
    expect(error.message).toContain('not whole f32 elements');
    props.dtype = lorafleet.v1.WireDtype.WIRE_DTYPE_F16;
    expect(errorOf(decodeChunk([sealed(props), new Uint8Array(7)])).kind).toBe('invalid');
  });

  it('rejects a corrupted payload by its checksum, and a corrupted header always', () => {
    const [header, payload] = encodeChunk(sampleChunk(), { checksum: true });
    const bad = Uint8Array.from(payload);
    bad[3]! ^= 0x10;
    expect(errorOf(decodeChunk([header, bad])).kind).toBe('checksum');
    const [plain] = encodeChunk(sampleChunk());
    for (let at = 0; at < plain.length; at++) {
      const flipped = Uint8Array.from(plain);
      flipped[at]! ^= 0x01;
      expect(errorOf(decodeChunk([flipped, payload])).kind, `bit flip at ${at}`).toBe('checksum');
    }
  });

  it('checks both frames by size before parsing', () => {
    const payload = new Uint8Array(4096);
    const frames = encodeChunk(sampleChunk({ payload }));
    const error = errorOf(decodeChunk(frames, { maxChunkPayloadBytes: 1024 }));
    expect(error.kind).toBe('too-large');
    expect(error.message).toContain('exceeds 1024');
    const header = new Uint8Array(CHUNK_HEADER_BYTES + 1);
    expect(errorOf(decodeChunk([header, payload])).kind).toBe('too-large');
  });

  it.each<[string, Partial<pb.v1.Chunk.$Properties>, string]>([
    ['an unknown phase', { phase: 0 }, 'chunk.phase'],
    ['an unknown dtype', { dtype: 9 as pb.v1.WireDtype }, 'chunk.dtype'],
    ['an index past the largest ring', { index: 5000 }, 'chunk.index'],
    ['a sender past the largest ring', { senderRank: 1024 }, 'chunk.senderRank'],
    ['an empty run id', { runId: '' }, 'chunk.runId'],
    ['a run id of 200 characters', { runId: 'r'.repeat(200) }, 'chunk.runId'],
    ['a header past CHUNK_HEADER_BYTES', { runId: 'r'.repeat(1000) }, 'chunk header of'],
  ])('rejects %s, naming the field', (_, override, field) => {
    const header = sealed({ ...rawProps(), ...override });
    const error = errorOf(decodeChunk([header, new Uint8Array(8)]));
    expect(error.kind).toBe(field === 'chunk header of' ? 'too-large' : 'invalid');
    expect(error.message).toContain(field);
  });

  it('refuses to encode an invalid chunk', () => {
    expect(() => encodeChunk(sampleChunk({ payload: new Uint8Array(3) }))).toThrow(/not whole/);
    expect(() => encodeChunk(sampleChunk({ step: -1 }))).toThrow(/chunk\.step/);
    expect(() => encodeChunk(sampleChunk({ generation: -1 }))).toThrow(/chunk\.generation/);
  });

  it('rejects a payload without a checksum when the receiver requires one', () => {
    const frames = encodeChunk(sampleChunk());
    const error = errorOf(decodeChunk(frames, {}, { requirePayloadChecksum: true }));
    expect(error.message).toContain('has no CRC-32');
    expect(decodeChunk(frames).ok).toBe(true);
  });

  it('rejects every truncation of either frame, and messages of other shapes', () => {
    const [header, payload] = encodeChunk(sampleChunk());
    for (let n = 0; n < header.length; n++)
      expect(decodeChunk([header.subarray(0, n), payload]).ok, `header cut at ${n}`).toBe(false);
    for (let n = 0; n < payload.length; n++)
      expect(decodeChunk([header, payload.subarray(0, n)]).ok, `payload cut at ${n}`).toBe(false);
    expect(errorOf(decodeChunk([header])).message).toContain('1 frames, not 2');
    expect(errorOf(decodeChunk([header, payload, payload])).kind).toBe('malformed');
  });
});

describe('crc32', () => {
  it(`is ${nativeCrc32 ? "zlib's native one here" : 'the JavaScript fallback here'}, and the fallback agrees with it`, () => {
    // The check value of CRC-32/ISO-HDLC.
    expect(crc32Js(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    const bytes = Uint8Array.from({ length: 4099 }, (_, i) => (i * 131 + 7) & 0xff);
    expect(crc32Js(bytes)).toBe(crc32(bytes));
    expect(crc32Js(bytes.subarray(5), crc32Js(bytes.subarray(0, 5)))).toBe(crc32(bytes));
  });
});

function fieldsOf(chunk: ReturnType<typeof sampleChunk>) {
  const { payload: _payload, ...fields } = chunk;
  return fields;
}

/** A header from the generated encoder with a valid CRC-32: any field values. */
function sealed(props: pb.v1.Chunk.$Properties): Uint8Array {
  const fields = lorafleet.v1.Chunk.encode(props).finish();
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32(fields));
  return Uint8Array.from([...fields, (10 << 3) | 5, ...crc]);
}

function rawProps(): pb.v1.Chunk.$Properties {
  return {
    runId: 'r',
    step: 1,
    phase: lorafleet.v1.Phase.PHASE_REDUCE_SCATTER,
    index: 0,
    senderRank: 0,
    dtype: lorafleet.v1.WireDtype.WIRE_DTYPE_F32,
    payloadBytes: 8,
  };
}
