// The ring's options, their defaults (each with its reason), and their checks.
import {
  BYTES_PER_ELEMENT,
  DEFAULT_LIMITS,
  MAX_RUN_ID_LENGTH,
  type WireDtype,
  type WireLimits,
} from '@lorafleet/protocol';

export interface RingOptions {
  /** This process's place in the ring, 0 .. worldSize - 1. */
  rank: number;
  worldSize: number;
  /** Where the left neighbour connects: tcp://host:port, tcp://127.0.0.1:* (a free port), ipc://path. */
  listen: string;
  /** Longest wait for any one frame, sent or received. Default 30 s: far above a step's all-reduce. */
  timeoutMs?: number;
  /** Largest payload per frame. Default 1 MiB: amortises per-message cost, still pipelines. */
  frameBytes?: number;
  /** Frames queued per link before a send waits. Default 8: ~2 x 8 x frameBytes of memory per link. */
  highWaterMark?: number;
  /** CRC-32 every frame. Default true (costs ~20% of throughput); the same on every rank. */
  checksum?: boolean;
  limits?: Partial<WireLimits>;
  /** Where dropped-frame lines go. Default console.warn. */
  log?: (line: string) => void;
}

export interface AllReduceOptions {
  /** Training step; frames of other steps are dropped. */
  step: number;
  runId: string;
  /** Element type on the wire; the result is rounded to it (f32: exact). The same on every rank. */
  wireDtype?: WireDtype;
}

export type RingSettings = Required<Omit<RingOptions, 'limits'>> & { limits: WireLimits };

export function resolveRingOptions(options: RingOptions): RingSettings {
  const { rank, worldSize } = options;
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  if (!Number.isInteger(worldSize) || worldSize < 1 || worldSize > limits.maxWorldSize) {
    throw new RangeError(`worldSize ${worldSize} must be an integer in 1..${limits.maxWorldSize}`);
  }
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
    throw new RangeError(`rank ${rank} must be an integer in 0..${worldSize - 1}`);
  }
  const settings: RingSettings = {
    rank,
    worldSize,
    listen: options.listen,
    timeoutMs: options.timeoutMs ?? 30_000,
    frameBytes: options.frameBytes ?? 1 << 20,
    highWaterMark: options.highWaterMark ?? 8,
    checksum: options.checksum ?? true,
    limits,
    log: options.log ?? ((line) => console.warn(`[lorafleet/collective] ${line}`)),
  };
  const { frameBytes, timeoutMs } = settings;
  if (!Number.isInteger(frameBytes) || frameBytes < 4 || frameBytes > limits.maxChunkPayloadBytes) {
    throw new RangeError(
      `frameBytes ${frameBytes} must be an integer in 4..${limits.maxChunkPayloadBytes} (maxChunkPayloadBytes)`,
    );
  }
  if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs ${timeoutMs} must be positive`);
  return settings;
}

export function checkAllReduceOptions(options: AllReduceOptions): Required<AllReduceOptions> {
  const { step, runId, wireDtype = 'f32' } = options;
  if (!Number.isSafeInteger(step) || step < 0) {
    throw new RangeError(`step ${step} must be a non-negative safe integer`);
  }
  if (typeof runId !== 'string' || runId.length === 0 || runId.length > MAX_RUN_ID_LENGTH) {
    throw new RangeError(`runId must have 1..${MAX_RUN_ID_LENGTH} characters`);
  }
  if (BYTES_PER_ELEMENT[wireDtype] === undefined) {
    throw new RangeError(`wireDtype ${String(wireDtype)} is not one of f32, f16, bf16`);
  }
  return { step, runId, wireDtype };
}
