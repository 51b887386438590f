// A worker's compute progress in shared memory. The main thread, which a
// micro-batch blocks for seconds, writes it; the heartbeat thread reads it
// while the main thread is blocked and reports it to the coordinator, which
// tells a long micro-batch (progress moved recently) from a hung one (it did not).
import type { WorkerState } from '@lorafleet/protocol';

const STATES: readonly WorkerState[] = [
  'unspecified',
  'idle',
  'computing',
  'reducing',
  'updating',
  'checkpointing',
  'loading',
];

/** Int32 slots of the shared buffer. */
const PROGRESS = 0;
const STATE = 1;
/** While a micro-batch computes: its limit in ms (0: not computing). */
const LIMIT_MS = 2;
const STEPS_DONE = 3;
/** 1 while the first micro-batch computes (no measurement yet). */
const WARMING_UP = 4;
const INT_SLOTS = 5;

/** What the heartbeat thread reports. */
export interface ProgressReading {
  progress: number;
  state: WorkerState;
  stepsDone: number;
  /** How long progress has not moved while a micro-batch computes (0 when not computing). */
  stalledMs: number;
  /** The limit the computation announced for one micro-batch (0 when not computing). */
  computeLimitMs: number;
  /** The first micro-batch computes: its limit is a guess, not a measurement. */
  warmingUp: boolean;
}

export class ComputeProgress {
  private readonly ints: Int32Array;
  /** Date.now() of the last bump: a float64 (Atomics cannot, but one writer and a whole-slot read suffice). */
  private readonly bumpedAt: Float64Array;

  /** `buffer`: another thread's, to read; absent: a new one, to write. */
  constructor(readonly buffer = new SharedArrayBuffer(INT_SLOTS * 4 + 12)) {
    this.ints = new Int32Array(buffer, 0, INT_SLOTS);
    // Float64s start at a multiple of 8 bytes.
    this.bumpedAt = new Float64Array(buffer, Math.ceil((INT_SLOTS * 4) / 8) * 8, 1);
  }

  /**
   * The computation moved on: before a micro-batch with its limit in ms (and
   * whether that is a first guess), after the last one with 0 (not computing).
   */
  bump(computeLimitMs: number, warmingUp = false): void {
    this.bumpedAt[0] = Date.now();
    Atomics.store(this.ints, WARMING_UP, warmingUp ? 1 : 0);
    Atomics.store(this.ints, LIMIT_MS, Math.max(0, Math.min(computeLimitMs, 0x7fff_ffff)));
    Atomics.add(this.ints, PROGRESS, 1);
  }

  set state(state: WorkerState) {
    Atomics.store(this.ints, STATE, STATES.indexOf(state));
  }

  set stepsDone(steps: number) {
    Atomics.store(this.ints, STEPS_DONE, steps);
  }

  read(now = Date.now()): ProgressReading {
    const limit = Atomics.load(this.ints, LIMIT_MS);
    return {
      // Unsigned: a run of more than 2^31 bumps wraps, and the coordinator only compares.
      progress: Atomics.load(this.ints, PROGRESS) >>> 0,
      state: STATES[Atomics.load(this.ints, STATE)] ?? 'unspecified',
      stepsDone: Atomics.load(this.ints, STEPS_DONE),
      stalledMs: limit > 0 ? Math.max(0, Math.round(now - this.bumpedAt[0]!)) : 0,
      computeLimitMs: limit,
      warmingUp: limit > 0 && Atomics.load(this.ints, WARMING_UP) === 1,
    };
  }
}
