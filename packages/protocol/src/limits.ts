/** The protocol version this build speaks; a peer with another is refused, never guessed at. */
export const PROTOCOL_VERSION = 1;

/** Bounds applied to every frame BEFORE it is decoded, so a hostile or broken peer cannot make us allocate. */
export interface WireLimits {
  /** Largest encoded control message. 1 MiB holds a StepPlan of ~100k sample ids. */
  maxControlBytes: number;
  /** Largest chunk payload. 16 MiB keeps one frame's copies small next to a GPU's memory. */
  maxChunkPayloadBytes: number;
  /** Largest ring; bounds ranks and ring step indices. */
  maxWorldSize: number;
}

export const DEFAULT_LIMITS: Readonly<WireLimits> = Object.freeze({
  maxControlBytes: 1 << 20,
  maxChunkPayloadBytes: 16 << 20,
  maxWorldSize: 1024,
});

/** Largest chunk header frame (run id up to MAX_RUN_ID_LENGTH bytes, varints, checksums). */
export const CHUNK_HEADER_BYTES = 512;

/** Run ids are short names or uuids; longer ones are a sign of a foreign sender. */
export const MAX_RUN_ID_LENGTH = 128;

export type DecodeErrorKind = 'too-large' | 'malformed' | 'version' | 'invalid' | 'checksum';

export interface DecodeError {
  kind: DecodeErrorKind;
  /** What was wrong and where (the field path), for a log line. */
  message: string;
}

export type DecodeResult<T> = { ok: true; message: T } | { ok: false; error: DecodeError };

export function resolveLimits(limits: Partial<WireLimits> = {}): WireLimits {
  return { ...DEFAULT_LIMITS, ...limits };
}

export function fail(kind: DecodeErrorKind, message: string): { ok: false; error: DecodeError } {
  return { ok: false, error: { kind, message } };
}
