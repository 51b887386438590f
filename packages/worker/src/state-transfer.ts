// A replica's trainer state (parameters + AdamW moments + step) as bytes, for
// a worker joining a running job: a survivor serializes it, the coordinator
// forwards it in TrainerState parts, the joiner restores it bit for bit.
//
// Layout (little-endian): "LFTS" | u32 version | u32 size | f64 step |
// values f32[size] | m f32[size] | v f32[size].
import { createHash } from 'node:crypto';
import { STATE_PART_BYTES, type TrainerState as TrainerStatePart } from '@lorafleet/protocol';
import type { TrainState } from './step.js';

const MAGIC = 0x5354464c; // "LFTS"
const VERSION = 1;
const HEADER = 20;

export function encodeTrainState(state: TrainState): Uint8Array {
  const size = state.values.length;
  const bytes = new Uint8Array(HEADER + 12 * size);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, VERSION, true);
  view.setUint32(8, size, true);
  view.setFloat64(12, state.optimizer.step, true);
  const body = new Float32Array(bytes.buffer, HEADER, 3 * size);
  body.set(state.values, 0);
  body.set(state.optimizer.m, size);
  body.set(state.optimizer.v, 2 * size);
  return bytes;
}

/** Decodes and checks a trainer state for a replica of `size` trainable parameters. */
export function decodeTrainState(bytes: Uint8Array, size: number): TrainState {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < HEADER || view.getUint32(0, true) !== MAGIC) {
    throw new Error('trainer state: not a LoRA Fleet trainer state');
  }
  if (view.getUint32(4, true) !== VERSION) {
    throw new Error(`trainer state: version ${view.getUint32(4, true)}, expected ${VERSION}`);
  }
  const stated = view.getUint32(8, true);
  if (stated !== size || bytes.byteLength !== HEADER + 12 * size) {
    throw new Error(
      `trainer state: holds ${stated} parameters in ${bytes.byteLength} bytes; this replica trains ${size}`,
    );
  }
  const step = view.getFloat64(12, true);
  if (!Number.isSafeInteger(step) || step < 0) throw new Error(`trainer state: bad step ${step}`);
  // Copy out of the (possibly unaligned) byte view.
  const body = new Float32Array(bytes.slice(HEADER).buffer);
  return {
    values: body.slice(0, size),
    optimizer: { step, m: body.slice(size, 2 * size), v: body.slice(2 * size, 3 * size) },
  };
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The TrainerState messages that carry `bytes` (parts of at most STATE_PART_BYTES). */
export function stateParts(step: number, bytes: Uint8Array): TrainerStatePart[] {
  const sha256 = sha256Hex(bytes);
  const parts = Math.max(1, Math.ceil(bytes.byteLength / STATE_PART_BYTES));
  return Array.from({ length: parts }, (_, part) => ({
    step,
    part,
    parts,
    data: bytes.subarray(part * STATE_PART_BYTES, (part + 1) * STATE_PART_BYTES),
    sha256,
  }));
}

/** Reassembles TrainerState parts as they come; `add` returns the bytes once all are in and verified. */
export class StateAssembler {
  private parts: (Uint8Array | undefined)[] = [];
  private header: { step: number; parts: number; sha256: string } | undefined;

  add(p: TrainerStatePart): { step: number; bytes: Uint8Array } | undefined {
    const h = this.header;
    if (!h || h.step !== p.step || h.parts !== p.parts || h.sha256 !== p.sha256) {
      // A new transfer (or the first): start over.
      this.header = { step: p.step, parts: p.parts, sha256: p.sha256 };
      this.parts = new Array<Uint8Array | undefined>(p.parts).fill(undefined);
    }
    this.parts[p.part] = p.data;
    if (this.parts.some((x) => x === undefined)) return undefined;
    const total = this.parts.reduce((n, x) => n + x!.byteLength, 0);
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const x of this.parts) {
      bytes.set(x!, at);
      at += x!.byteLength;
    }
    const header = this.header!;
    this.header = undefined;
    this.parts = [];
    if (sha256Hex(bytes) !== header.sha256) {
      throw new Error(`trainer state of step ${header.step}: sha256 mismatch after reassembly`);
    }
    return { step: header.step, bytes };
  }
}
