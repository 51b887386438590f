// Frozen base weights in fewer bytes (--base-dtype): W as 16-bit halves
// packed two per 32-bit word (an int32 tensor, half the bytes of f32; this
// file), or as QLoRA's 4-bit NF4 (nf4.ts), unpacked to f32 right before each
// matmul (packed-base.ts, backend/unpack-base.ts). The LoRA factors, their
// gradients and the optimizer state stay f32.
import { f32ToBf16, f32ToF16 } from '../io/dtype.js';

/** How the frozen base weight W is stored on the device. */
export type BaseDtype = 'f32' | 'bf16' | 'f16' | 'nf4';
export const BASE_DTYPES: readonly BaseDtype[] = ['f32', 'bf16', 'f16', 'nf4'];
export type HalfDtype = 'bf16' | 'f16';

/**
 * values [n] -> 16-bit halves (round to nearest even) packed two per int32
 * word, element 2i in the low 16 bits (what WGSL's unpack2x16float reads as
 * .x): [ceil(n / 2)]. An odd n pads one zero half.
 */
export function packHalves(values: Float32Array, dtype: HalfDtype): Int32Array {
  const halves = new Uint16Array(values.length + (values.length % 2));
  halves.set(dtype === 'f16' ? f32ToF16(values) : f32ToBf16(values));
  // Uint16 -> Int32 through the same bytes: little-endian hosts only (as safetensors).
  return new Int32Array(halves.buffer);
}

/** One half to f32: f16 as IEEE binary16, bf16 as the top 16 bits of an f32. */
function halfToNumber(h: number, dtype: HalfDtype, scratch: Float32Array, bits: Uint32Array) {
  if (dtype === 'bf16') {
    bits[0] = h << 16;
    return scratch[0]!;
  }
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

/** packHalves' inverse into `out` (length n <= 2 * packed.length). */
export function unpackHalvesInto(packed: Int32Array, dtype: HalfDtype, out: Float32Array): void {
  const scratch = new Float32Array(1);
  const bits = new Uint32Array(scratch.buffer);
  for (let i = 0; i < out.length; i++) {
    const word = packed[i >>> 1]!;
    const h = i & 1 ? (word >>> 16) & 0xffff : word & 0xffff;
    out[i] = halfToNumber(h, dtype, scratch, bits);
  }
}
