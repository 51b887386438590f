// The ring's options, their defaults (each with its reason), and their checks.
import {
  BYTES_PER_ELEMENT,
  DEFAULT_LIMITS,
  MAX_RUN_ID_LENGTH,
  type WireDtype,
  type WireLimits,
} from '@lorafleet/protocol';
import { isZ85Key, type CurveKeyPair } from './curve.js';

/**
 * CURVE on the ring: every link encrypted, and each rank's receiving socket admits only its
 * left neighbour's key. Given at bind(), since the rank's neighbours are fixed by then.
 */
export interface RingCurve {
  /** This rank's key pair; publicKeys[rank] must be its public key. */
  keyPair: CurveKeyPair;
  /** Every rank's public key (Z85), by rank. */
  publicKeys: readonly string[];
}

export interface RingOptions {
  /** This process's place in the ring, 0 .. worldSize - 1. */
  rank: number;
  worldSize: number;
  /** Where the left neighbour connects: tcp://host:port, tcp://127.0.0.1:* (a free port), ipc://path. */
  listen: string;
  /** Longest wait for any one frame, sent or received. Default 30 s: far above a step's all-reduce. */
  timeoutMs?: number;
  /**
   * Largest payload per piece. Default (measured: test/bench/allreduce/README.md) 2 MiB on
   * the tcp transport, 512 KiB on zmq (one ZeroMQ message each; ZeroMQ allocates every
   * received message, and larger ones cost it more): large enough to amortise the per-piece
   * cost, small enough that a piece moves on while the next arrives.
   */
  frameBytes?: number;
  /** Frames queued per link before a send waits. Default 8: ~2 x 8 x frameBytes of memory per link. */
  highWaterMark?: number;
  /**
   * CRC-32 every piece's payload too (its header always is). Default false: TCP checksums
   * the bytes (and CURVE authenticates them), and a payload CRC costs each end a pass over
   * every byte. The same on every rank: a rank with it on refuses pieces without one.
   */
  checksum?: boolean;
  limits?: Partial<WireLimits>;
  /** Where dropped-frame lines go. Default console.warn. */
  log?: (line: string) => void;
  /** Encrypt and authenticate the ring's links. Default: off (plain tcp/ipc). */
  curve?: RingCurve;
  /**
   * What carries the pieces: 'tcp' (node:net sockets, tcp:// or ipc:// endpoints; several times
   * less CPU per byte than ZeroMQ, see docs/wire.md) or 'zmq' (ZeroMQ PUSH/PULL). Default 'tcp',
   * and 'zmq' with `curve`: the tcp transport has no encryption, so CURVE requires 'zmq'.
   * The same on every rank.
   */
  transport?: RingTransport;
  /**
   * 'auto' (default): two ranks exchange their whole buffers in one round (exchange.ts: the
   * same bytes as the ring, half the round trips) when the buffer is at most one piece
   * (frameBytes on the wire), and run the ring otherwise, as more ranks always do; 'ring' and
   * 'exchange' (two ranks only) force one, for comparisons. The same on every rank.
   */
  algorithm?: RingAlgorithm;
}

export type RingTransport = 'tcp' | 'zmq';
export type RingAlgorithm = 'auto' | 'ring' | 'exchange';

export interface AllReduceOptions {
  /** Training step; frames of other steps are dropped. */
  step: number;
  runId: string;
  /** Element type on the wire; the result is rounded to it (f32: exact). The same on every rank. */
  wireDtype?: WireDtype;
  /** The ring's membership generation; pieces of another are dropped as stale. Default 0. */
  generation?: number;
}

export type RingSettings = Required<Omit<RingOptions, 'limits' | 'curve'>> & {
  limits: WireLimits;
  curve: RingCurve | undefined;
};

/** Piece size by transport (2-process all-reduce on one host, 2026-12-04: 2 MiB pieces took tcp from 0.64x to 1.49x of gloo at 16 MiB; zmq lost at 64 MiB with them). */
const DEFAULT_FRAME_BYTES: Record<RingTransport, number> = { tcp: 2 << 20, zmq: 512 << 10 };

export function resolveRingOptions(options: RingOptions): RingSettings {
  const { rank, worldSize } = options;
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  if (!Number.isInteger(worldSize) || worldSize < 1 || worldSize > limits.maxWorldSize) {
    throw new RangeError(`worldSize ${worldSize} must be an integer in 1..${limits.maxWorldSize}`);
  }
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
    throw new RangeError(`rank ${rank} must be an integer in 0..${worldSize - 1}`);
  }
  const transport = options.transport ?? (options.curve ? 'zmq' : 'tcp');
  const settings: RingSettings = {
    rank,
    worldSize,
    listen: options.listen,
    timeoutMs: options.timeoutMs ?? 30_000,
    frameBytes: options.frameBytes ?? DEFAULT_FRAME_BYTES[transport] ?? 512 << 10,
    highWaterMark: options.highWaterMark ?? 8,
    checksum: options.checksum ?? false,
    limits,
    log: options.log ?? ((line) => console.warn(`[lorafleet/collective] ${line}`)),
    curve: options.curve && checkCurve(options.curve, rank, worldSize),
    transport,
    algorithm: options.algorithm ?? 'auto',
  };
  if (!['auto', 'ring', 'exchange'].includes(settings.algorithm)) {
    throw new RangeError(`algorithm ${String(settings.algorithm)} must be auto, ring or exchange`);
  }
  if (settings.algorithm === 'exchange' && worldSize !== 2) {
    throw new RangeError(`algorithm 'exchange' takes two ranks, not ${worldSize}`);
  }
  if (settings.transport !== 'tcp' && settings.transport !== 'zmq') {
    throw new RangeError(`transport ${String(settings.transport)} must be tcp or zmq`);
  }
  if (settings.curve && settings.transport === 'tcp') {
    throw new RangeError(
      "transport 'tcp' does not encrypt: a ring with curve keys must use transport 'zmq' (the default with curve)",
    );
  }
  const { frameBytes, timeoutMs } = settings;
  if (!Number.isInteger(frameBytes) || frameBytes < 4 || frameBytes > limits.maxChunkPayloadBytes) {
    throw new RangeError(
      `frameBytes ${frameBytes} must be an integer in 4..${limits.maxChunkPayloadBytes} (maxChunkPayloadBytes)`,
    );
  }
  if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs ${timeoutMs} must be positive`);
  return settings;
}

function checkCurve(curve: RingCurve, rank: number, worldSize: number): RingCurve {
  const { keyPair, publicKeys } = curve;
  if (publicKeys.length !== worldSize) {
    throw new RangeError(
      `curve.publicKeys has ${publicKeys.length} keys for a ring of ${worldSize}`,
    );
  }
  const bad = publicKeys.findIndex((key) => !isZ85Key(key));
  if (bad >= 0)
    throw new RangeError(`curve.publicKeys[${bad}] is not a CURVE key (40 Z85 characters)`);
  if (!isZ85Key(keyPair.secretKey) || publicKeys[rank] !== keyPair.publicKey) {
    throw new RangeError(
      `curve.keyPair must be rank ${rank}'s: a valid secret key and publicKeys[${rank}] as its public key`,
    );
  }
  return curve;
}

export function checkAllReduceOptions(options: AllReduceOptions): Required<AllReduceOptions> {
  const { step, runId, wireDtype = 'f32', generation = 0 } = options;
  if (!Number.isSafeInteger(step) || step < 0) {
    throw new RangeError(`step ${step} must be a non-negative safe integer`);
  }
  if (typeof runId !== 'string' || runId.length === 0 || runId.length > MAX_RUN_ID_LENGTH) {
    throw new RangeError(`runId must have 1..${MAX_RUN_ID_LENGTH} characters`);
  }
  if (BYTES_PER_ELEMENT[wireDtype] === undefined) {
    throw new RangeError(`wireDtype ${String(wireDtype)} is not one of f32, f16, bf16`);
  }
  if (!Number.isInteger(generation) || generation < 0 || generation > 0xffffffff) {
    throw new RangeError(`generation ${generation} must be an integer in 0..2^32-1`);
  }
  return { step, runId, wireDtype, generation };
}
