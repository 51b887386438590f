import { describe, expect, it } from 'vitest';
import {
  bf16BitsToF32,
  decodeFloats,
  encodeFloats,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  roundToWire,
  type WireDtype,
} from '../src/index.js';

const codecs = {
  f16: { toBits: f32ToF16Bits, fromBits: f16BitsToF32, maxFinite: 0x7bff },
  bf16: { toBits: f32ToBf16Bits, fromBits: bf16BitsToF32, maxFinite: 0x7f7f },
} as const;

function nextUp(x: number): number {
  const f = new Float32Array([x]);
  new Uint32Array(f.buffer)[0]! += 1;
  return f[0]!;
}

describe.each(['f16', 'bf16'] as const)('%s', (dtype) => {
  const { toBits, fromBits, maxFinite } = codecs[dtype];

  // One expect per pattern would dominate the run time: collect the failures instead.
  it('round-trips every one of the 65536 bit patterns (NaNs stay NaN)', () => {
    const wrong: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const value = fromBits(h);
      const back = toBits(value);
      if (Number.isNaN(value) ? !Number.isNaN(fromBits(back)) : back !== h) wrong.push(h);
    }
    expect(wrong).toEqual([]);
  });

  it('rounds every midpoint between neighbours to the even one', () => {
    const wrong: number[] = [];
    for (let h = 0; h < maxFinite; h++) {
      const mid = (fromBits(h) + fromBits(h + 1)) / 2; // exact in float32: one more bit
      const even = h % 2 === 0 ? h : h + 1;
      // Just off the midpoint (the next float32 up) rounds to the upper neighbour.
      if (toBits(mid) !== even || toBits(nextUp(mid)) !== h + 1) wrong.push(h);
    }
    expect(wrong).toEqual([]);
  });

  it('sends overflow to infinity and keeps signed zero', () => {
    expect(fromBits(toBits(dtype === 'f16' ? 70000 : 3.4e38))).toBe(Infinity);
    expect(fromBits(toBits(-Infinity))).toBe(-Infinity);
    expect(Object.is(fromBits(toBits(-0)), -0)).toBe(true);
  });
});

describe('known values', () => {
  it('matches IEEE binary16 on the edge cases', () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65519)).toBe(0x7bff); // below the midpoint to 65536
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // the midpoint rounds to even: infinity
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // half of it ties to even zero
    expect(f32ToF16Bits(1.5 * 2 ** -25)).toBe(0x0001);
    expect(f32ToF16Bits(2 ** -14)).toBe(0x0400); // smallest normal
    expect(f16BitsToF32(0xc000)).toBe(-2);
  });

  it('matches bfloat16 on the edge cases', () => {
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    expect(f32ToBf16Bits(Math.fround(1 + 2 ** -8))).toBe(0x3f80); // tie to even
    expect(f32ToBf16Bits(Math.fround(1 + 3 * 2 ** -8))).toBe(0x3f82); // tie to even, upward
    expect(bf16BitsToF32(0x4049)).toBe(3.140625);
  });
});

describe('payloads', () => {
  const values = new Float32Array([0, -1.5, 3.140625, 1e-3, -65504, 1e6]);

  it.each<WireDtype>(['f32', 'f16', 'bf16'])('%s decodes what it encodes', (dtype) => {
    const out = new Float32Array(values.length);
    decodeFloats(encodeFloats(values, dtype), dtype, out);
    const rounded = Float32Array.from(values);
    roundToWire(rounded, dtype);
    expect(out).toEqual(rounded);
    if (dtype === 'f32') expect(out).toEqual(values);
  });

  it('decodes from an odd byte offset, as a received frame may sit', () => {
    const bytes = encodeFloats(values, 'f16');
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    const out = new Float32Array(values.length);
    decodeFloats(shifted.subarray(1), 'f16', out);
    expect(out[1]).toBe(-1.5);
  });

  it('refuses a payload that does not fill the output', () => {
    expect(() => decodeFloats(new Uint8Array(6), 'f16', new Float32Array(4))).toThrow(
      /6 bytes of f16/,
    );
  });
});
