// fp16 (IEEE binary16) and bf16 (bfloat16) on the wire. Float32 -> half rounds to
// nearest, ties to even, like a GPU's conversion and numpy's astype; overflow goes
// to infinity and NaN stays NaN (quiet). Payloads are little-endian, as on every
// machine we run on (checked below).
import type { WireDtype } from './messages.js';

export const BYTES_PER_ELEMENT: Readonly<Record<WireDtype, number>> = Object.freeze({
  f32: 4,
  f16: 2,
  bf16: 2,
});

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);

function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 | (mantissa >>> 13) : 0);
  const e = exponent - 127 + 15; // half's biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): value = m * 2^-24 with the implicit bit made explicit.
    if (e < -10) return sign;
    const m = mantissa | 0x800000;
    const shift = 14 - e;
    const half = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    const tie = 1 << (shift - 1);
    return sign | (rest > tie || (rest === tie && (half & 1) !== 0) ? half + 1 : half);
  }
  const h = sign | (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  return rest > 0x1000 || (rest === 0x1000 && (h & 1) !== 0) ? h + 1 : h;
}

function f32BitsToBf16Bits(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

let f16Table: Float32Array | undefined;

/** All 65536 half values as float32: decoding is then one lookup per element. */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) table[h] = (sign !== 0 ? -1 : 1) * m * 2 ** -24;
    else if (e === 0x1f) bits[h] = (sign | 0x7f800000 | (m << 13)) >>> 0;
    else bits[h] = (sign | ((e - 15 + 127) << 23) | (m << 13)) >>> 0;
  }
  f16Table = table;
  return table;
}

export function f32ToF16Bits(value: number): number {
  scratch[0] = value;
  return f32BitsToF16Bits(scratchBits[0] ?? 0);
}

export function f16BitsToF32(bits: number): number {
  return halfTable()[bits & 0xffff] ?? 0;
}

export function f32ToBf16Bits(value: number): number {
  scratch[0] = value;
  return f32BitsToBf16Bits(scratchBits[0] ?? 0);
}

export function bf16BitsToF32(bits: number): number {
  scratchBits[0] = (bits & 0xffff) << 16;
  return scratch[0] ?? 0;
}

function assertLittleEndian(): void {
  if (!littleEndian)
    throw new Error('lorafleet wire payloads are little-endian; this machine is not');
}

/** Values as little-endian `dtype` bytes. For f32 this is a view of `values`, not a copy. */
export function encodeFloats(values: Float32Array, dtype: WireDtype): Uint8Array {
  assertLittleEndian();
  if (dtype === 'f32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  const convert = dtype === 'f16' ? f32BitsToF16Bits : f32BitsToBf16Bits;
  for (let i = 0; i < bits.length; i++) out[i] = convert(bits[i] ?? 0);
  return new Uint8Array(out.buffer);
}

/** Decodes `payload` into `out`, whose length must be payload.length / BYTES_PER_ELEMENT[dtype]. */
export function decodeFloats(payload: Uint8Array, dtype: WireDtype, out: Float32Array): void {
  assertLittleEndian();
  const size = BYTES_PER_ELEMENT[dtype];
  if (payload.length !== out.length * size) {
    throw new RangeError(
      `decodeFloats: ${payload.length} bytes of ${dtype} do not fill ${out.length} elements`,
    );
  }
  if (dtype === 'f32') {
    new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(payload);
    return;
  }
  // A received frame's payload may sit at an odd offset; a Uint16Array view needs an even one.
  const aligned = payload.byteOffset % 2 === 0 ? payload : payload.slice();
  const halves = new Uint16Array(aligned.buffer, aligned.byteOffset, out.length);
  if (dtype === 'f16') {
    const table = halfTable();
    for (let i = 0; i < halves.length; i++) out[i] = table[halves[i] ?? 0] ?? 0;
  } else {
    const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
    for (let i = 0; i < halves.length; i++) bits[i] = (halves[i] ?? 0) << 16;
  }
}

/** Rounds `values` in place to the nearest value `dtype` can carry (a no-op for f32). */
export function roundToWire(values: Float32Array, dtype: WireDtype): void {
  if (dtype !== 'f32') decodeFloats(encodeFloats(values, dtype), dtype, values);
}
