// Field checks shared by the control and data codecs. They throw InvalidField,
// which the decoders turn into a { ok: false } result at their boundary.
import { MAX_RUN_ID_LENGTH } from './limits.js';

export class InvalidField extends Error {}

/** protobufjs decodes uint64 as a Long when the `long` package is present, else as a number. */
export interface LongBits {
  low: number;
  high: number;
}

export function u64(value: number | LongBits | null | undefined, field: string): number {
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value >= 0) return value;
    throw new InvalidField(`${field} = ${value} is not a non-negative safe integer`);
  }
  if (value === null || value === undefined) throw new InvalidField(`${field} is missing`);
  const high = value.high >>> 0;
  // 2^53 - 1 is the largest integer a double holds exactly: high word < 2^21.
  if (high >= 0x200000) throw new InvalidField(`${field} exceeds 2^53 - 1`);
  return high * 0x1_0000_0000 + (value.low >>> 0);
}

export function u32(
  value: number | null | undefined,
  field: string,
  min = 0,
  max = 0xffff_ffff,
): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidField(`${field} = ${String(value)} is outside [${min}, ${max}]`);
  }
  return value;
}

export function finite(value: number | null | undefined, field: string, min = -Infinity): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new InvalidField(`${field} = ${String(value)} is not a finite number >= ${min}`);
  }
  return value;
}

/** Any double, NaN and infinities included (for fields where "not finite" is itself news). */
export function number(value: number | null | undefined, field: string): number {
  if (typeof value !== 'number')
    throw new InvalidField(`${field} = ${String(value)} is not a number`);
  return value;
}

export function text(value: string | null | undefined, field: string, min = 0, max = 4096): string {
  if (typeof value !== 'string' || value.length < min || value.length > max) {
    const length = typeof value === 'string' ? value.length : 'missing';
    throw new InvalidField(`${field} has length ${length}, expected ${min}..${max}`);
  }
  return value;
}

export function runId(value: string | null | undefined, field: string): string {
  return text(value, field, 1, MAX_RUN_ID_LENGTH);
}

export function bytes(
  value: Uint8Array | null | undefined,
  field: string,
  max: number,
): Uint8Array {
  if (!(value instanceof Uint8Array) || value.length > max) {
    throw new InvalidField(`${field} must be at most ${max} bytes`);
  }
  return value;
}

export function list<T>(value: T[] | null | undefined, field: string, max: number): T[] {
  const items = value ?? [];
  if (items.length > max)
    throw new InvalidField(`${field} has ${items.length} entries, at most ${max}`);
  return items;
}

/** A two-way table between a proto enum's numbers and the string union the API uses. */
export class EnumTable<S extends string> {
  private readonly byName: Map<S, number>;
  constructor(private readonly byNumber: ReadonlyMap<number, S>) {
    this.byName = new Map([...byNumber].map(([n, s]) => [s, n]));
  }
  name(value: number | null | undefined, field: string): S {
    const name = value === null || value === undefined ? undefined : this.byNumber.get(value);
    if (name === undefined)
      throw new InvalidField(`${field} = ${String(value)} is not a known value`);
    return name;
  }
  number(name: S, field: string): number {
    const value = this.byName.get(name);
    if (value === undefined)
      throw new InvalidField(`${field} = ${String(name)} is not a known value`);
    return value;
  }
}
