// TensorBoard event files (--report-to tensorboard, transformers'
// report_to="tensorboard"): each metrics.jsonl line as scalars under the
// names transformers' TensorBoardCallback gives TRL's logs ("train/loss",
// "train/learning_rate", "train/rewards/accuracies", "eval/loss"), in
// OUT/runs/events.out.tfevents.*. The file is TFRecord framing (the length,
// a masked CRC-32C of it, the record, a masked CRC-32C of it) around
// tensorflow's Event protos, encoded here (a handful of fields) so that
// neither TensorFlow nor a protobuf schema is needed.
import { appendFileSync, mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { TRL_NAMES } from './trl-names.js';

/** CRC-32C (Castagnoli), the checksum of TFRecord framing. */
export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC32C_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** TFRecord's masked CRC: rotated right by 15 bits, plus a constant. */
const maskedCrc = (bytes: Uint8Array) => {
  const crc = crc32c(bytes);
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
};

/** One TFRecord: uint64 length, masked CRC of it, the data, masked CRC of it (little-endian). */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(16 + data.length);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc(data), true);
  return out;
}

/** The tag transformers' TensorBoardCallback writes for a metrics.jsonl key; null for the step itself. */
export function tensorBoardTag(key: string): string | null {
  if (key === 'step') return null;
  const held = /^eval([A-Z].*)$/.exec(key)?.[1];
  if (held !== undefined) {
    const name = held[0]!.toLowerCase() + held.slice(1);
    return `eval/${TRL_NAMES[name] ?? name}`;
  }
  return `train/${TRL_NAMES[key] ?? key}`;
}

/** Writes a run's metrics lines to an event file of its own in `dir`, as they come. */
export class TensorBoardWriter {
  readonly file: string;

  constructor(dir: string, now = Date.now()) {
    mkdirSync(dir, { recursive: true });
    const name = `events.out.tfevents.${Math.floor(now / 1000)}.${hostname()}.${process.pid}.0`;
    this.file = join(dir, name);
    appendFileSync(this.file, tfRecord(event(now / 1000, 0, { fileVersion: 'brain.Event:2' })));
  }

  /** A metrics.jsonl line: its finite numbers at its step, one event. */
  line(values: Readonly<Record<string, unknown>>, now = Date.now()): void {
    const scalars: [string, number][] = [];
    for (const [key, value] of Object.entries(values)) {
      const tag = tensorBoardTag(key);
      if (tag !== null && typeof value === 'number' && Number.isFinite(value))
        scalars.push([tag, value]);
    }
    const step = Number(values.step);
    if (!Number.isSafeInteger(step) || scalars.length === 0) return;
    appendFileSync(this.file, tfRecord(event(now / 1000, step, { scalars })));
  }
}

/** A protobuf message in progress: fields appended in order. */
class Fields {
  private readonly parts: Uint8Array[] = [];

  varint(field: number, value: number): this {
    return this.raw(key(field, 0), varint(value));
  }

  double(field: number, value: number): this {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setFloat64(0, value, true);
    return this.raw(key(field, 1), bytes);
  }

  float(field: number, value: number): this {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    return this.raw(key(field, 5), bytes);
  }

  bytes(field: number, value: Uint8Array | string): this {
    const data = typeof value === 'string' ? new TextEncoder().encode(value) : value;
    return this.raw(key(field, 2), varint(data.length), data);
  }

  done(): Uint8Array {
    const out = new Uint8Array(this.parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  private raw(...parts: Uint8Array[]): this {
    this.parts.push(...parts);
    return this;
  }
}

const key = (field: number, wireType: number) => varint(field * 8 + wireType);

function varint(value: number): Uint8Array {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Uint8Array.from(out);
}

/**
 * tensorflow.Event: wall_time (1, double), step (2, int64), file_version (3)
 * or summary (5): Summary.value (1), each Summary.Value's tag (1) and
 * simple_value (2, float).
 */
function event(
  wallTime: number,
  step: number,
  what: { fileVersion: string } | { scalars: readonly [string, number][] },
): Uint8Array {
  const e = new Fields().double(1, wallTime).varint(2, step);
  if ('fileVersion' in what) return e.bytes(3, what.fileVersion).done();
  const summary = new Fields();
  for (const [tag, value] of what.scalars)
    summary.bytes(1, new Fields().bytes(1, tag).float(2, value).done());
  return e.bytes(5, summary.done()).done();
}
