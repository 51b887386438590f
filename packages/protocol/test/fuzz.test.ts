// Property-based: whatever bytes arrive, the decoders answer with a result and
// never throw, and what they accept is a valid message (it encodes again and
// decodes to itself). Every ControlMessage body case of the .proto is fuzzed
// from its sample: random bytes, every truncation, every single-bit flip,
// field-level mutations of the protobuf wire format (at any depth), and
// oversize inputs. A new body case gets all of this once samples.ts has it
// (the first test fails until it does). Bounded runs keep the file fast.
import { join } from 'node:path';
import { inspect, isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { bodies as codecs } from '../src/control-bodies.js';
import {
  type Chunk,
  crc32,
  DEFAULT_LIMITS,
  type DecodeResult,
  type WireLimits,
  decodeChunk,
  decodeControl,
  encodeChunk,
  encodeControl,
} from '../src/index.js';
import { bodies, controls, sampleChunk } from './samples.js';

const PROTO = join(import.meta.dirname, '..', '..', '..', 'proto', 'lorafleet', 'v1');
const envelope = protobuf
  .loadSync(join(PROTO, 'control.proto'))
  .lookupType('lorafleet.v1.ControlMessage');
/** The oneof's cases, from the .proto itself: name -> field number. */
const protoCases = new Map(envelope.oneofs.body!.fieldsArray.map((f) => [f.name, f.id]));

const frameOf = new Map(controls.map((m) => [m.body.case, encodeControl(m)]));
// A chunk is [header, payload]. The fuzzed bytes are the header's fields: each is tried as
// it is (its CRC-32 then fails) and resealed with a fresh CRC-32, which lets the mutations
// reach the field checks behind it.
const chunkMessages = [
  encodeChunk(sampleChunk()),
  encodeChunk(sampleChunk({ dtype: 'f16', payload: new Uint8Array(64) })),
  encodeChunk(sampleChunk(), { checksum: true }), // with the payload's CRC-32 too
];
const CHECKSUM_TAG = (10 << 3) | 5;
const fieldsOf = (header: Uint8Array) => header.subarray(0, header.length - 5);
const seal = (fields: Uint8Array): Uint8Array => {
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32(fields));
  return Uint8Array.from([...fields, CHECKSUM_TAG, ...crc]);
};
const chunkFrames = chunkMessages.map(([header]) => fieldsOf(header));
const samplePayload = chunkMessages[0]![1];
const validFrames = [...frameOf.values(), ...chunkMessages.map(([header]) => header)];
const KINDS = ['too-large', 'malformed', 'version', 'invalid', 'checksum'];

/** A result, never a throw; a refusal says why; an accepted message survives a round trip. */
function checkResult<T>(result: DecodeResult<T>, roundTrip: (m: T) => DecodeResult<T>): void {
  if (!result.ok) {
    if (!KINDS.includes(result.error.kind) || result.error.message === '')
      throw new Error(`a refusal without a kind or reason: ${JSON.stringify(result.error)}`);
    return;
  }
  const again = roundTrip(result.message);
  if (!isDeepStrictEqual(again, result))
    throw new Error(`accepted ${inspect(result.message)}, which encodes to ${inspect(again)}`);
}

/** Chunk payloads view the frame they came in (a Buffer in, a Buffer out): compare bytes. */
const plainPayload = (r: DecodeResult<Chunk>): DecodeResult<Chunk> =>
  r.ok ? { ok: true, message: { ...r.message, payload: Uint8Array.from(r.message.payload) } } : r;

function controlSafely(bytes: Uint8Array, limits?: Partial<WireLimits>): boolean {
  checkResult(decodeControl(bytes, limits), (m) => decodeControl(encodeControl(m), limits));
  return true;
}

function chunkSafely(
  bytes: Uint8Array,
  payload: Uint8Array = samplePayload,
  limits?: Partial<WireLimits>,
): boolean {
  for (const requirePayloadChecksum of [true, false]) {
    const options = { requirePayloadChecksum };
    for (const header of [bytes, seal(bytes)]) {
      checkResult(plainPayload(decodeChunk([header, payload], limits, options)), (m) => {
        const { payloadChecksum, ...rest } = m;
        const frames = encodeChunk(rest, { checksum: payloadChecksum !== undefined, limits });
        return plainPayload(decodeChunk(frames, limits, options));
      });
    }
  }
  return true;
}

/** Every decoder, on the same bytes. */
const decodesSafely = (bytes: Uint8Array) => controlSafely(bytes) && chunkSafely(bytes);

// --- The protobuf wire format, just enough to mutate messages field by field.

type WireType = 0 | 1 | 2 | 5;
interface Field {
  no: number;
  wire: WireType;
  /** A varint's value, or the bytes of a fixed64, fixed32 or length-delimited field. */
  value: bigint | Uint8Array;
}

function readVarint(b: Uint8Array, at: number): [bigint, number] | null {
  let v = 0n;
  for (let i = 0; i < 10; i++) {
    const byte = b[at + i];
    if (byte === undefined) return null;
    v |= BigInt(byte & 0x7f) << BigInt(7 * i);
    if (byte < 0x80) return [v, at + i + 1];
  }
  return null;
}

/** The fields of a message, or null when the bytes are not one. */
function parseMessage(b: Uint8Array): Field[] | null {
  const fields: Field[] = [];
  let at = 0;
  while (at < b.length) {
    const tag = readVarint(b, at);
    if (!tag) return null;
    const no = Number(tag[0] >> 3n);
    const wire = Number(tag[0] & 7n);
    at = tag[1];
    if (no === 0) return null;
    if (wire === 0) {
      const v = readVarint(b, at);
      if (!v) return null;
      fields.push({ no, wire, value: v[0] });
      at = v[1];
    } else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      if (at + n > b.length) return null;
      fields.push({ no, wire, value: b.slice(at, at + n) });
      at += n;
    } else if (wire === 2) {
      const len = readVarint(b, at);
      if (!len || len[1] + Number(len[0]) > b.length) return null;
      at = len[1] + Number(len[0]);
      fields.push({ no, wire, value: b.slice(len[1], at) });
    } else return null;
  }
  return fields;
}

function varint(v: bigint): number[] {
  const out: number[] = [];
  let x = BigInt.asUintN(64, v);
  do {
    const low = Number(x & 0x7fn);
    x >>= 7n;
    out.push(x > 0n ? low | 0x80 : low);
  } while (x > 0n);
  return out;
}

function encodeMessage(fields: readonly Field[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const { no, wire, value } of fields) {
    parts.push(Uint8Array.from(varint((BigInt(no) << 3n) | BigInt(wire))));
    if (typeof value === 'bigint') parts.push(Uint8Array.from(varint(value)));
    else {
      if (wire === 2) parts.push(Uint8Array.from(varint(BigInt(value.length))));
      parts.push(value);
    }
  }
  return new Uint8Array(Buffer.concat(parts));
}

type Mutation =
  | { kind: 'drop' | 'duplicate'; index: number }
  | { kind: 'varint'; index: number; value: bigint }
  | { kind: 'bytes'; index: number; bytes: Uint8Array }
  | { kind: 'packed'; index: number; values: bigint[] }
  | { kind: 'oversize'; index: number; length: number }
  | { kind: 'renumber'; index: number; no: number }
  | { kind: 'rewire'; index: number; wire: WireType }
  | { kind: 'insert'; index: number; field: Field };

function mutate(fields: Field[], m: Mutation): Field[] {
  const out = [...fields];
  if (m.kind === 'insert') {
    out.splice(m.index % (out.length + 1), 0, m.field);
    return out;
  }
  if (out.length === 0) return out;
  const i = m.index % out.length;
  const f = out[i]!;
  const set = (wire: WireType, value: bigint | Uint8Array) => (out[i] = { no: f.no, wire, value });
  switch (m.kind) {
    case 'drop':
      out.splice(i, 1);
      break;
    case 'duplicate':
      out.splice(i, 0, f);
      break;
    case 'varint':
      set(0, m.value);
      break;
    case 'bytes':
      set(2, m.bytes);
      break;
    case 'packed':
      set(2, Uint8Array.from(m.values.flatMap(varint)));
      break;
    case 'oversize':
      set(2, new Uint8Array(m.length).fill(0x61));
      break;
    case 'renumber':
      out[i] = { ...f, no: m.no };
      break;
    case 'rewire': {
      const sizes = { 1: 8, 5: 4 } as const;
      if (m.wire === 0) set(0, 1n);
      else if (m.wire === 2) set(2, typeof f.value === 'bigint' ? Uint8Array.of(1) : f.value);
      else set(m.wire, new Uint8Array(sizes[m.wire]).fill(0xff));
      break;
    }
  }
  return out;
}

/**
 * Applies `m` to the message `path` leads to: each step picks one of the
 * length-delimited fields that parse as a non-empty message (the body, then
 * e.g. stepDone.timings), stopping where there is none.
 */
function mutateAt(bytes: Uint8Array, path: readonly number[], m: Mutation): Uint8Array {
  const fields = parseMessage(bytes);
  if (!fields) return bytes;
  const nested = fields
    .map((f, i) => [f, i] as const)
    .filter(([f]) => f.wire === 2 && (parseMessage(f.value as Uint8Array)?.length ?? 0) > 0);
  const [step, ...rest] = path;
  if (step === undefined || nested.length === 0) return encodeMessage(mutate(fields, m));
  const [field, i] = nested[step % nested.length]!;
  const out = [...fields];
  out[i] = { ...field, value: mutateAt(field.value as Uint8Array, rest, m) };
  return encodeMessage(out);
}

const bodyNumbers = [...protoCases.values()];
const edgeVarints = [0n, 1n, 2n ** 31n - 1n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n - 1n];
const varintValue = fc.oneof(
  fc.constantFrom(...edgeVarints, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
);
const wireType = fc.constantFrom<WireType>(0, 1, 2, 5);
const fieldNo = fc.oneof(fc.constantFrom(...bodyNumbers), fc.integer({ min: 1, max: 40 }));
const index = fc.nat({ max: 64 });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constantFrom('drop' as const, 'duplicate' as const), index }),
  fc.record({ kind: fc.constant('varint' as const), index, value: varintValue }),
  fc.record({
    kind: fc.constant('bytes' as const),
    index,
    bytes: fc.uint8Array({ maxLength: 48 }),
  }),
  fc.record({
    kind: fc.constant('packed' as const),
    index,
    values: fc.array(varintValue, { maxLength: 12 }),
  }),
  fc.record({
    kind: fc.constant('oversize' as const),
    index,
    length: fc.constantFrom(64, 257, 4097, 65_537),
  }),
  fc.record({ kind: fc.constant('renumber' as const), index, no: fieldNo }),
  fc.record({ kind: fc.constant('rewire' as const), index, wire: wireType }),
  fc.record({
    kind: fc.constant('insert' as const),
    index,
    field: fc.oneof(
      fc.record({ no: fieldNo, wire: fc.constant(0 as const), value: varintValue }),
      fc.record({
        no: fieldNo,
        wire: fc.constant(2 as const),
        value: fc.uint8Array({ maxLength: 24 }),
      }),
    ),
  }),
);
/** One to three mutations, each at a random depth. */
const mutations = fc.array(fc.tuple(fc.array(fc.nat(), { maxLength: 3 }), mutation), {
  minLength: 1,
  maxLength: 3,
});

function applyAll(frame: Uint8Array, ms: [number[], Mutation][]): Uint8Array {
  return ms.reduce((bytes, [path, m]) => mutateAt(bytes, path, m), frame);
}

describe('the fuzzed cases', () => {
  it('are every body case of control.proto: samples and codecs cover each one', () => {
    expect(protoCases.size).toBeGreaterThanOrEqual(15);
    expect(new Set(bodies.map((b) => b.case))).toEqual(new Set(protoCases.keys()));
    expect(new Set(Object.keys(codecs))).toEqual(new Set(protoCases.keys()));
    for (const frame of validFrames) expect(decodesSafely(frame)).toBe(true);
  });

  it('parse and re-encode through the test wire codec unchanged', () => {
    for (const frame of validFrames)
      expect(Buffer.compare(encodeMessage(parseMessage(frame)!), frame)).toBe(0);
  });
});

describe.each([...protoCases.keys()])('decoders fuzzed from a valid %s', (name) => {
  const frame = frameOf.get(name as (typeof bodies)[number]['case'])!;

  it('survive every truncation and every single-bit flip', () => {
    for (let end = 0; end < frame.length; end++) controlSafely(frame.subarray(0, end));
    for (let at = 0; at < frame.length; at++) {
      for (let bit = 0; bit < 8; bit++) {
        const flipped = Uint8Array.from(frame);
        flipped[at]! ^= 1 << bit;
        controlSafely(flipped);
      }
    }
  });

  it('survive field-level mutations of the wire format', () => {
    fc.assert(
      fc.property(mutations, (ms) => controlSafely(applyAll(frame, ms))),
      { numRuns: 150 },
    );
  });
});

describe('decoders under fuzzing', () => {
  const RUNS = 1000;

  it('answer random bytes with a result, never a throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (b) => decodesSafely(b)),
      {
        numRuns: RUNS,
      },
    );
  });

  it('answer random byte-level edits of valid frames with a result', () => {
    const edited = fc
      .record({
        frame: fc.constantFrom(...validFrames),
        writes: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
        cut: fc.option(fc.nat()),
        insert: fc.option(fc.tuple(fc.nat(), fc.uint8Array({ maxLength: 16 }))),
      })
      .map(({ frame, writes, cut, insert }) => {
        let bytes = Uint8Array.from(frame);
        for (const [at, value] of writes) bytes[at % bytes.length] = value;
        if (insert) {
          const at = insert[0] % (bytes.length + 1);
          bytes = new Uint8Array([...bytes.subarray(0, at), ...insert[1], ...bytes.subarray(at)]);
        }
        return cut === null ? bytes : bytes.subarray(0, cut % (bytes.length + 1));
      });
    fc.assert(
      fc.property(edited, (b) => decodesSafely(b)),
      { numRuns: RUNS },
    );
  });

  it('answer field-level mutations of chunk headers (resealed or not) with a result', () => {
    fc.assert(
      fc.property(fc.constantFrom(...chunkFrames), mutations, (frame, ms) =>
        chunkSafely(applyAll(frame, ms)),
      ),
      { numRuns: 400 },
    );
  });

  it('accept a mutated chunk header only when it is unchanged', () => {
    fc.assert(
      fc.property(fc.constantFrom(...chunkMessages), mutations, ([header, payload], ms) => {
        const bytes = applyAll(header, ms);
        return !decodeChunk([bytes, payload]).ok || Buffer.compare(bytes, header) === 0;
      }),
      { numRuns: 400 },
    );
  });

  it('accept an edited payload with its CRC-32 only when it is unchanged, never a cut one', () => {
    const [header, payload] = chunkMessages[2]!;
    const edits = fc.record({
      writes: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
      cut: fc.option(fc.nat()),
    });
    fc.assert(
      fc.property(edits, ({ writes, cut }) => {
        let bytes = Uint8Array.from(payload);
        for (const [at, value] of writes) bytes[at % bytes.length] = value;
        if (cut !== null) bytes = bytes.subarray(0, cut % bytes.length);
        const result = decodeChunk([header, bytes], {}, { requirePayloadChecksum: true });
        return !result.ok || Buffer.compare(bytes, payload) === 0;
      }),
      { numRuns: 400 },
    );
    // Unchecked payloads are still refused when cut: the header holds their length.
    const [plainHeader, plainPayload] = chunkMessages[0]!;
    for (let end = 0; end < plainPayload.length; end++) {
      expect(decodeChunk([plainHeader, plainPayload.subarray(0, end)]).ok).toBe(false);
    }
  });

  it('survive inputs that are not bytes at all', () => {
    for (const junk of [null, undefined, 'text', 42, {}, [1, 2]]) {
      expect(decodeControl(junk as unknown as Uint8Array).ok).toBe(false);
      expect(decodeChunk(junk as unknown as Uint8Array[]).ok).toBe(false);
      expect(decodeChunk([junk, junk] as unknown as Uint8Array[]).ok).toBe(false);
    }
  });
});

describe('oversize inputs', () => {
  const kind = <T>(r: DecodeResult<T>) => (r.ok ? 'ok' : r.error.kind);

  it('are refused by size before parsing', () => {
    const huge = new Uint8Array(DEFAULT_LIMITS.maxControlBytes + 1);
    expect(kind(decodeControl(huge))).toBe('too-large');
    const chunk = new Uint8Array(DEFAULT_LIMITS.maxChunkPayloadBytes + 1024);
    const [header] = chunkMessages[0]!;
    expect(kind(decodeChunk([header, chunk]))).toBe('too-large');
    expect(kind(decodeChunk([chunk, samplePayload]))).toBe('too-large');
    for (const frame of frameOf.values()) {
      expect(kind(decodeControl(frame, { maxControlBytes: frame.length - 1 }))).toBe('too-large');
      expect(kind(decodeControl(frame, { maxControlBytes: frame.length }))).toBe('ok');
    }
  });

  it('answer length prefixes that claim far more than the frame holds', () => {
    for (const [, no] of protoCases) {
      for (const claim of [2n ** 31n - 1n, 2n ** 32n + 5n, 2n ** 64n - 1n]) {
        const bytes = Uint8Array.from([...varint((BigInt(no) << 3n) | 2n), ...varint(claim), 1]);
        expect(kind(decodeControl(bytes))).toBe('malformed');
      }
    }
  });

  it('refuse rings larger than the limit and lists past the frame limit', () => {
    const welcome = frameOf.get('welcome')!;
    expect(kind(decodeControl(welcome, { maxWorldSize: 2 }))).toBe('invalid');
    // The largest step plan that fits 1 MiB still decodes, quickly.
    const ids = Array.from({ length: 200_000 }, (_, i) => i);
    const plan = encodeControl({
      runId: 'r',
      body: {
        case: 'stepPlan',
        value: { step: 1, sampleIds: ids, microBatchSize: 1, lrReductions: 0 },
      },
    });
    expect(kind(decodeControl(plan))).toBe('ok');
    expect(() =>
      encodeControl({
        runId: 'r',
        body: {
          case: 'trainerState',
          value: {
            step: 1,
            part: 0,
            parts: 1,
            data: new Uint8Array(1 << 20),
            sha256: 'e'.repeat(64),
          },
        },
      }),
    ).toThrow(/too-large|exceeds/);
  });
});
