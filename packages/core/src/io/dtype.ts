// Float conversions between F32 and the 16-bit formats stored in safetensors files.
// All rounding is round-to-nearest-even, as torch and numpy do, so a file written
// here holds the same bits Python would have written for the same F32 values.

function bitsOf(src: Float32Array): Uint32Array {
  return new Uint32Array(src.buffer, src.byteOffset, src.length);
}

function f32BitsToF16(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) {
    if (mant === 0) return sign | 0x7c00;
    // Setting the quiet bit keeps a NaN a NaN even when its payload sits in the
    // low 13 bits that the shift drops.
    return sign | 0x7e00 | (mant >>> 13);
  }
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Below 2^-25 even rounding up cannot reach the smallest subnormal 2^-24.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e; // value = mant * 2^(e - 38); f16 subnormal unit = 2^-24
    const half = 1 << (shift - 1);
    const rem = mant & ((1 << shift) - 1);
    let r = mant >>> shift;
    if (rem > half || (rem === half && (r & 1) === 1)) r++;
    return sign | r; // r == 0x400 is the smallest normal, encoded correctly by the carry
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa bumps the exponent, and out of 0x7bff gives inf.
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1) === 1)) r++;
  return sign | r;
}

function f16BitsToNumber(h: number): number {
  const negative = (h & 0x8000) !== 0;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  let v: number;
  if (exp === 0) v = mant * 2 ** -24;
  else if (exp === 0x1f) v = mant === 0 ? Infinity : NaN;
  else v = (1024 + mant) * 2 ** (exp - 25);
  return negative ? -v : v;
}

export function f32ToF16(src: Float32Array): Uint16Array {
  const bits = bitsOf(src);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16(bits[i]!);
  return out;
}

export function f16ToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f16BitsToNumber(src[i]!);
  return out;
}

export function f32ToBf16(src: Float32Array): Uint16Array {
  const bits = bitsOf(src);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!;
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
      // Truncating could clear every payload bit and turn the NaN into inf.
      out[i] = (x >>> 16) | 0x0040;
    } else {
      // Adding 0x7fff plus the lowest kept bit rounds ties to even; the sum stays
      // below 2^32 for every non-NaN pattern, so the shift cannot wrap.
      out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}

export function bf16ToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  const bits = bitsOf(out);
  for (let i = 0; i < src.length; i++) bits[i] = src[i]! << 16;
  return out;
}
