// A replica's trainer state (parameters + optimizer state + step) as bytes,
// for a worker joining a running job: a survivor serializes it, the
// coordinator forwards it in TrainerState parts, the joiner restores it bit
// for bit.
//
// Layout (little-endian): "LFTS" | u32 version | u32 size | f64 step |
// u32 header bytes | header: JSON [[state name, length], ...], space-padded
// to 4 bytes | values f32[size] | each state buffer f32[length], in order.
import { createHash } from 'node:crypto';
import { STATE_PART_BYTES, type TrainerState as TrainerStatePart } from '@lorafleet/protocol';
import type { TrainState } from './step.js';

const MAGIC = 0x5354464c; // "LFTS"
const VERSION = 2;
const FIXED = 24;

export function encodeTrainState(state: TrainState): Uint8Array {
  const size = state.values.length;
  const buffers = Object.entries(state.optimizer.buffers);
  const json = JSON.stringify(buffers.map(([name, b]) => [name, b.length]));
  const header = new TextEncoder().encode(json.padEnd(Math.ceil(json.length / 4) * 4, ' '));
  const floats = size + buffers.reduce((n, [, b]) => n + b.length, 0);
  const bytes = new Uint8Array(FIXED + header.length + 4 * floats);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, VERSION, true);
  view.setUint32(8, size, true);
  view.setFloat64(12, state.optimizer.step, true);
  view.setUint32(20, header.length, true);
  bytes.set(header, FIXED);
  const body = new Float32Array(bytes.buffer, FIXED + header.length, floats);
  body.set(state.values, 0);
  let at = size;
  for (const [, b] of buffers) {
    body.set(b, at);
    at += b.length;
  }
  return bytes;
}

/**
 * Decodes and checks a trainer state for a replica of `size` trainable
 * parameters whose optimizer keeps `buffers` (TrainingStep.stateSizes()).
 */
export function decodeTrainState(
  bytes: Uint8Array,
  size: number,
  buffers: readonly { name: string; length: number }[],
): TrainState {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < FIXED || view.getUint32(0, true) !== MAGIC) {
    throw new Error('trainer state: not a LoRA Fleet trainer state');
  }
  if (view.getUint32(4, true) !== VERSION) {
    throw new Error(`trainer state: version ${view.getUint32(4, true)}, expected ${VERSION}`);
  }
  const stated = view.getUint32(8, true);
  const headerBytes = view.getUint32(20, true);
  const floats = size + buffers.reduce((n, b) => n + b.length, 0);
  if (stated !== size || FIXED + headerBytes > bytes.byteLength) {
    throw new Error(
      `trainer state: holds ${stated} parameters in ${bytes.byteLength} bytes; this replica trains ${size}`,
    );
  }
  const expected = JSON.stringify(buffers.map((b) => [b.name, b.length]));
  const held = new TextDecoder().decode(bytes.subarray(FIXED, FIXED + headerBytes)).trim();
  if (held !== expected) {
    const shown = /^[\x20-\x7e]{0,500}$/.test(held) ? held : '(unreadable)';
    throw new Error(
      `trainer state: holds optimizer state ${shown}; this replica keeps ${expected}`,
    );
  }
  if (bytes.byteLength !== FIXED + headerBytes + 4 * floats) {
    throw new Error(
      `trainer state: holds ${stated} parameters in ${bytes.byteLength} bytes; this replica trains ${size}`,
    );
  }
  const step = view.getFloat64(12, true);
  if (!Number.isSafeInteger(step) || step < 0) throw new Error(`trainer state: bad step ${step}`);
  // Copy out of the (possibly unaligned) byte view.
  const body = new Float32Array(bytes.slice(FIXED + headerBytes).buffer);
  const state: TrainState = { values: body.slice(0, size), optimizer: { step, buffers: {} } };
  let at = size;
  for (const { name, length } of buffers) {
    state.optimizer.buffers[name] = body.slice(at, (at += length));
  }
  return state;
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
