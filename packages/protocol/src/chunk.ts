// Data-plane framing: a chunk is one ZeroMQ message of two frames, a small
// protobuf header and the payload bytes themselves. Keeping the tensor bytes out
// of the protobuf lets the sender pass a view of its buffer (no encode, no copy)
// and the receiver read the payload where it arrived. The header carries its own
// CRC-32 (always) and the payload's length; the payload's CRC-32 is optional.
import protobuf from 'protobufjs/minimal.js';
import { crc32 } from './crc32.js';
import { lorafleet } from './generated/lorafleet.js';
import type { lorafleet as pb } from './generated/lorafleet.types.js';
import { EnumTable, InvalidField, runId, u32, u64 } from './fields.js';
import { BYTES_PER_ELEMENT } from './half.js';
import {
  CHUNK_HEADER_BYTES,
  resolveLimits,
  fail,
  type DecodeResult,
  type WireLimits,
} from './limits.js';
import type { Chunk, Phase, WireDtype } from './messages.js';

const { Writer } = protobuf;
const { Phase: P, WireDtype: D } = lorafleet.v1;
const phases = new EnumTable<Phase>(
  new Map([
    [P.PHASE_REDUCE_SCATTER, 'reduce-scatter'],
    [P.PHASE_ALL_GATHER, 'all-gather'],
    [P.PHASE_EXCHANGE, 'exchange'],
  ]),
);
const dtypes = new EnumTable<WireDtype>(
  new Map([
    [D.WIRE_DTYPE_F32, 'f32'],
    [D.WIRE_DTYPE_F16, 'f16'],
    [D.WIRE_DTYPE_BF16, 'bf16'],
  ]),
);

export interface EncodeChunkOptions {
  /**
   * Also send a CRC-32 of the payload. Default false: the header is always checked, and
   * the payload's bytes are covered by TCP's checksum (and CURVE's MAC when on); a payload
   * CRC costs both ends a pass over every byte (zlib's crc32: ~1.6 GB/s on the CPU machine).
   */
  checksum?: boolean;
  limits?: Partial<WireLimits>;
}

/** The two frames of a chunk message: [header, payload]. */
export type ChunkFrames = [header: Buffer, payload: Buffer];

// Wire tag (field number << 3 | wire type) of the header checksum, written by hand.
const CHECKSUM_TAG = (10 << 3) | 5;
const CHECKSUM_BYTES = 5;

/** Buffer view of `bytes`: no copy (zeromq.js sends a Buffer of > 128 bytes without copying). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

/**
 * Encodes a chunk as [header, payload]. The payload frame is a view of `chunk.payload`,
 * not a copy: it must not change until the message has left (see the collective's ring).
 * Throws on a chunk the receiver would reject (a programming error).
 */
export function encodeChunk(
  chunk: Omit<Chunk, 'payloadChecksum'>,
  options: EncodeChunkOptions = {},
): ChunkFrames {
  try {
    checkChunk(chunk, resolveLimits(options.limits));
  } catch (error) {
    throw new Error(`encodeChunk: refusing to send an invalid chunk: ${(error as Error).message}`);
  }
  const props: pb.v1.Chunk.$Properties = {
    runId: chunk.runId,
    step: chunk.step,
    phase: phases.number(chunk.phase, 'phase'),
    index: chunk.index,
    senderRank: chunk.senderRank,
    dtype: dtypes.number(chunk.dtype, 'dtype'),
    segment: chunk.segment,
    offset: chunk.offset,
    generation: chunk.generation,
    payloadBytes: chunk.payload.length,
  };
  if (options.checksum) props.payloadChecksum = crc32(chunk.payload);
  const writer = Writer.create();
  lorafleet.v1.Chunk.encode(props, writer);
  const fields = writer.finish();
  const header = Buffer.allocUnsafe(fields.length + CHECKSUM_BYTES);
  header.set(fields, 0);
  header[fields.length] = CHECKSUM_TAG;
  header.writeUInt32LE(crc32(fields), fields.length + 1);
  return [header, asBuffer(chunk.payload)];
}

export interface DecodeChunkOptions {
  /** Refuse a payload without a CRC-32 (the receiver runs with checksums on). Default false. */
  requirePayloadChecksum?: boolean;
}

/** Decodes a two-frame chunk message; a result, never a throw. */
export function decodeChunk(
  parts: readonly Uint8Array[],
  limits?: Partial<WireLimits>,
  options: DecodeChunkOptions = {},
): DecodeResult<Chunk> {
  const lim = resolveLimits(limits);
  if (!Array.isArray(parts)) return fail('malformed', 'chunk message is not a list of frames');
  if (parts.length !== 2) {
    return fail('malformed', `chunk message has ${parts.length} frames, not 2 (header, payload)`);
  }
  const [header, payload] = parts as [unknown, unknown];
  if (!(header instanceof Uint8Array) || !(payload instanceof Uint8Array)) {
    return fail('malformed', 'chunk frames are not bytes');
  }
  if (header.length > CHUNK_HEADER_BYTES) {
    return fail(
      'too-large',
      `chunk header of ${header.length} bytes exceeds ${CHUNK_HEADER_BYTES}`,
    );
  }
  if (payload.length > lim.maxChunkPayloadBytes) {
    return fail(
      'too-large',
      `chunk payload of ${payload.length} bytes exceeds ${lim.maxChunkPayloadBytes}`,
    );
  }
  const end = header.length - CHECKSUM_BYTES;
  if (end < 0 || header[end] !== CHECKSUM_TAG) {
    return fail('checksum', 'chunk header does not end with its CRC-32 (cut, or not a chunk)');
  }
  const sent = Buffer.from(header.buffer, header.byteOffset, header.length).readUInt32LE(end + 1);
  const actual = crc32(header.subarray(0, end));
  if (actual !== sent) {
    return fail('checksum', `chunk header CRC-32 ${actual} does not match the sent ${sent}`);
  }
  let raw: pb.v1.Chunk;
  try {
    raw = lorafleet.v1.Chunk.decode(header);
  } catch (error) {
    return fail('malformed', `chunk header does not parse: ${(error as Error).message}`);
  }
  return chunkOf(raw, payload, lim, options);
}

function chunkOf(
  raw: pb.v1.Chunk,
  payload: Uint8Array,
  lim: WireLimits,
  options: DecodeChunkOptions,
): DecodeResult<Chunk> {
  try {
    const chunk: Chunk = {
      runId: runId(raw.runId, 'chunk.runId'),
      step: u64(raw.step, 'chunk.step'),
      phase: phases.name(raw.phase, 'chunk.phase'),
      index: u32(raw.index, 'chunk.index'),
      senderRank: u32(raw.senderRank, 'chunk.senderRank'),
      dtype: dtypes.name(raw.dtype, 'chunk.dtype'),
      segment: u32(raw.segment, 'chunk.segment'),
      offset: u32(raw.offset, 'chunk.offset'),
      generation: u32(raw.generation, 'chunk.generation'),
      payload,
    };
    const bytes = u32(raw.payloadBytes, 'chunk.payloadBytes');
    if (bytes !== payload.length) {
      return fail(
        'checksum',
        `chunk payload has ${payload.length} bytes where its header says ${bytes} (cut in transit?)`,
      );
    }
    if (raw.payloadChecksum !== null && raw.payloadChecksum !== undefined) {
      const actual = crc32(payload);
      if (actual !== raw.payloadChecksum) {
        return fail(
          'checksum',
          `chunk payload CRC-32 ${actual} does not match the sent ${raw.payloadChecksum}`,
        );
      }
      chunk.payloadChecksum = raw.payloadChecksum;
    } else if (options.requirePayloadChecksum) {
      return fail(
        'checksum',
        'chunk payload has no CRC-32, which this receiver requires (do all ranks pass the same `checksum`?)',
      );
    }
    checkChunk(chunk, lim);
    return { ok: true, message: chunk };
  } catch (error) {
    if (error instanceof InvalidField) return fail('invalid', error.message);
    return fail('malformed', `chunk header is inconsistent: ${(error as Error).message}`);
  }
}

/** Range checks that do not depend on the receiver's buffer (the collective checks segment/offset). */
function checkChunk(chunk: Omit<Chunk, 'payloadChecksum'>, lim: WireLimits): void {
  runId(chunk.runId, 'chunk.runId');
  u64(chunk.step, 'chunk.step');
  // A ring of n ranks has n - 1 steps per phase and n segments.
  u32(chunk.index, 'chunk.index', 0, lim.maxWorldSize - 2);
  u32(chunk.senderRank, 'chunk.senderRank', 0, lim.maxWorldSize - 1);
  u32(chunk.segment, 'chunk.segment', 0, lim.maxWorldSize - 1);
  u32(chunk.offset, 'chunk.offset');
  u32(chunk.generation, 'chunk.generation');
  const size = BYTES_PER_ELEMENT[chunk.dtype];
  if (size === undefined)
    throw new InvalidField(`chunk.dtype = ${String(chunk.dtype)} is not known`);
  if (!(chunk.payload instanceof Uint8Array)) throw new InvalidField('chunk.payload is missing');
  if (chunk.payload.length > lim.maxChunkPayloadBytes) {
    throw new InvalidField(
      `chunk.payload of ${chunk.payload.length} bytes exceeds ${lim.maxChunkPayloadBytes}`,
    );
  }
  if (chunk.payload.length % size !== 0) {
    throw new InvalidField(
      `chunk.payload of ${chunk.payload.length} bytes is not whole ${chunk.dtype} elements (${size} bytes each)`,
    );
  }
}
