// Data-plane framing: one Chunk per ZeroMQ frame. The frame size is checked
// before parsing; the payload must be whole elements of its dtype, and the frame
// must match its CRC-32 when one was sent.
import { crc32 } from 'node:zlib';
import protobuf from 'protobufjs/minimal.js';
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
  /** Append a CRC-32 of the whole frame (zlib's, several GB/s). Default true. */
  checksum?: boolean;
  limits?: Partial<WireLimits>;
}

// Wire tags (field number << 3 | wire type) of the two fields encodeChunk writes by hand.
const PAYLOAD_TAG = (9 << 3) | 2;
const CHECKSUM_TAG = (10 << 3) | 5;
const CHECKSUM_BYTES = 5;

/**
 * Encodes a chunk: header fields, then the payload, then the checksum over everything before
 * it. Copies the payload once. Throws on a chunk the receiver would reject (a programming error).
 */
export function encodeChunk(
  chunk: Omit<Chunk, 'checksum'>,
  options: EncodeChunkOptions = {},
): Uint8Array {
  try {
    checkChunk(chunk, resolveLimits(options.limits));
  } catch (error) {
    throw new Error(`encodeChunk: refusing to send an invalid chunk: ${(error as Error).message}`);
  }
  const header = lorafleet.v1.Chunk.encode({
    runId: chunk.runId,
    step: chunk.step,
    phase: phases.number(chunk.phase, 'phase'),
    index: chunk.index,
    senderRank: chunk.senderRank,
    dtype: dtypes.number(chunk.dtype, 'dtype'),
    segment: chunk.segment,
    offset: chunk.offset,
  }).finish();
  const prefix = Writer.create().uint32(PAYLOAD_TAG).uint32(chunk.payload.length).finish();
  const checksum = options.checksum ?? true;
  const end = header.length + prefix.length + chunk.payload.length;
  // Every byte is written below: skip the zero-fill.
  const frame = Buffer.allocUnsafe(end + (checksum ? CHECKSUM_BYTES : 0));
  frame.set(header, 0);
  frame.set(prefix, header.length);
  frame.set(chunk.payload, header.length + prefix.length);
  if (checksum) {
    frame[end] = CHECKSUM_TAG;
    frame.writeUInt32LE(crc32(frame.subarray(0, end)), end + 1);
  }
  return frame;
}

export interface DecodeChunkOptions {
  /**
   * Reject frames without a checksum. Default true, pairing with encodeChunk's default: a frame
   * cut at a field boundary parses as a shorter valid chunk, and only the missing checksum tells.
   */
  requireChecksum?: boolean;
}

export function decodeChunk(
  bytes: Uint8Array,
  limits?: Partial<WireLimits>,
  options: DecodeChunkOptions = {},
): DecodeResult<Chunk> {
  const lim = resolveLimits(limits);
  if (!(bytes instanceof Uint8Array)) return fail('malformed', 'chunk frame is not bytes');
  const max = lim.maxChunkPayloadBytes + CHUNK_HEADER_BYTES;
  if (bytes.length > max) {
    return fail('too-large', `chunk frame of ${bytes.length} bytes exceeds ${max}`);
  }
  let raw: pb.v1.Chunk;
  try {
    raw = lorafleet.v1.Chunk.decode(bytes);
  } catch (error) {
    return fail('malformed', `chunk frame does not parse: ${(error as Error).message}`);
  }
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
      payload: raw.payload,
    };
    if (raw.checksum !== null && raw.checksum !== undefined) {
      const end = bytes.length - CHECKSUM_BYTES;
      const actual = bytes[end] === CHECKSUM_TAG ? crc32(bytes.subarray(0, end)) : undefined;
      if (actual !== raw.checksum) {
        return fail(
          'checksum',
          `chunk CRC-32 ${actual ?? '(not last)'} does not match the sent ${raw.checksum}`,
        );
      }
      chunk.checksum = raw.checksum;
    } else if (options.requireChecksum ?? true) {
      return fail(
        'checksum',
        'chunk has no checksum (truncated, or the sender turned checksums off)',
      );
    }
    checkChunk(chunk, lim);
    return { ok: true, message: chunk };
  } catch (error) {
    if (error instanceof InvalidField) return fail('invalid', error.message);
    return fail('malformed', `chunk frame is inconsistent: ${(error as Error).message}`);
  }
}

/** Range checks that do not depend on the receiver's buffer (the collective checks segment/offset). */
function checkChunk(chunk: Omit<Chunk, 'checksum'>, lim: WireLimits): void {
  runId(chunk.runId, 'chunk.runId');
  u64(chunk.step, 'chunk.step');
  // A ring of n ranks has n - 1 steps per phase and n segments.
  u32(chunk.index, 'chunk.index', 0, lim.maxWorldSize - 2);
  u32(chunk.senderRank, 'chunk.senderRank', 0, lim.maxWorldSize - 1);
  u32(chunk.segment, 'chunk.segment', 0, lim.maxWorldSize - 1);
  u32(chunk.offset, 'chunk.offset');
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
