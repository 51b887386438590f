export {
  PROTOCOL_VERSION,
  DEFAULT_LIMITS,
  CHUNK_HEADER_BYTES,
  MAX_RUN_ID_LENGTH,
  type WireLimits,
  type DecodeError,
  type DecodeErrorKind,
  type DecodeResult,
} from './limits.js';
export type * from './messages.js';
export { encodeControl, decodeControl, type ControlMessageInit } from './control.js';
export { STATE_PART_BYTES } from './control-bodies.js';
export {
  encodeChunk,
  decodeChunk,
  type EncodeChunkOptions,
  type DecodeChunkOptions,
  type ChunkFrames,
} from './chunk.js';
export { crc32, crc32Js, nativeCrc32 } from './crc32.js';
export {
  BYTES_PER_ELEMENT,
  encodeFloats,
  decodeFloats,
  roundToWire,
  f32ToF16Bits,
  f16BitsToF32,
  f32ToBf16Bits,
  bf16BitsToF32,
} from './half.js';
export { REPLIES, REPLY_TO, type Reply, type Request } from './exchanges.js';
export { isLoopback } from './loopback.js';
