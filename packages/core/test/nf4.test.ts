// NF4 (--base-dtype nf4) against an independent statement of bitsandbytes'
// quantize_4bit(quant_type="nf4", blocksize=64): each value's index is the
// code value nearest to w / absmax (argmin over the 16 values, in float64,
// where lora/nf4.ts searches bitsandbytes' f32 midpoints), two indices per
// byte with the first in the high nibble, one absmax per 64 values.
import { describe, expect, it } from 'vitest';
import {
  NF4_BLOCK,
  NF4_CODE,
  Rng,
  dequantizeNf4Into,
  nf4Index,
  quantizeNf4,
} from '../src/index.js';

/** The reference index: the nearest code value. */
function nearest(x: number): number {
  let best = 0;
  for (let k = 1; k < 16; k++)
    if (Math.abs(x - NF4_CODE[k]!) < Math.abs(x - NF4_CODE[best]!)) best = k;
  return best;
}

/** The reference dequantization of values [n] (in [out, in] order): code[nearest(w / absmax)] * absmax. */
function reference(values: Float32Array): Float32Array {
  const out = new Float32Array(values.length);
  for (let start = 0; start < values.length; start += NF4_BLOCK) {
    const block = values.subarray(start, start + NF4_BLOCK);
    const absmax = block.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    block.forEach((v, j) => {
      out[start + j] = absmax === 0 ? 0 : Math.fround(NF4_CODE[nearest(v / absmax)]! * absmax);
    });
  }
  return out;
}

function gaussian(n: number, seed: number, scale = 0.02): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

describe('NF4 (QLoRA 4-bit NormalFloat, bitsandbytes layout)', () => {
  it('picks the nearest code value, as an argmin over the table does', () => {
    const rng = new Rng(3);
    const xs = [...NF4_CODE, ...Array.from({ length: 20000 }, () => 2 * rng.uniform() - 1)];
    // Just above and below each midpoint between neighbours.
    for (let k = 0; k < 15; k++) {
      const mid = (NF4_CODE[k]! + NF4_CODE[k + 1]!) / 2;
      xs.push(mid - 1e-6, mid + 1e-6);
    }
    const wrong = xs.filter((x) => nf4Index(Math.fround(x)) !== nearest(Math.fround(x)));
    expect(wrong).toEqual([]);
    expect(nf4Index(NaN)).toBe(0); // an all-zero block (0 / 0), as bitsandbytes
  });

  it('packs two indices per byte, the first in the high nibble, one absmax per 64 values', () => {
    // absmax 2: x / 2 = 1, -1, 0, 0.25 (nearest 0.2461, index 10), -0.1 (-0.0911, index 6)
    const { packed, absmax } = quantizeNf4(Float32Array.of(2, -2, 0, 0.5, -0.2));
    expect(Array.from(absmax)).toEqual([2]);
    expect(Array.from(new Uint8Array(packed.buffer))).toEqual([0xf0, 0x7a, 0x67, 0]);
    const blocks = quantizeNf4(gaussian(2 * NF4_BLOCK + 3, 5));
    expect(blocks.absmax.length).toBe(3);
    expect(blocks.packed.length).toBe(Math.ceil((2 * NF4_BLOCK + 3) / 8));
  });

  it('dequantizes to the reference, blocks and a partial last block included', () => {
    for (const n of [1, 7, 64, 65, 200, 4096 + 13]) {
      const values = gaussian(n, n);
      values[0] = 0.5; // a block with one large value
      const out = new Float32Array(n);
      dequantizeNf4Into(quantizeNf4(values), [1, n], false, out);
      expect(out).toEqual(reference(values));
    }
    const zeros = new Float32Array(70);
    const out = new Float32Array(70).fill(1);
    dequantizeNf4Into(quantizeNf4(zeros), [7, 10], false, out);
    expect(Array.from(out).every((v) => v === 0)).toBe(true);
  });

  it('keeps each value within half the widest gap between codes of its block absmax', () => {
    const values = gaussian(1000, 11, 1);
    const { packed, absmax } = quantizeNf4(values);
    const out = new Float32Array(values.length);
    dequantizeNf4Into({ packed, absmax }, [10, 100], false, out);
    const gap = Math.max(...NF4_CODE.subarray(1).map((v, k) => v - NF4_CODE[k]!)); // the widest
    let worst = 0;
    values.forEach((v, i) => {
      worst = Math.max(worst, Math.abs(out[i]! - v) / absmax[Math.floor(i / NF4_BLOCK)]!);
    });
    expect(worst).toBeLessThanOrEqual(gap / 2 + 1e-6);
    expect(worst).toBeGreaterThan(0.01); // it does round
  });

  it('writes the transpose for a fan-in-fan-out layer, its blocks still along `in`', () => {
    const [out, inp] = [5, 27]; // W [out, in] as bitsandbytes quantizes it
    const w = gaussian(out * inp, 17);
    const nf4 = quantizeNf4(w);
    const plain = new Float32Array(w.length);
    dequantizeNf4Into(nf4, [out, inp], false, plain);
    const t = new Float32Array(w.length);
    dequantizeNf4Into(nf4, [inp, out], true, t);
    for (let o = 0; o < out; o++)
      for (let i = 0; i < inp; i++) {
        expect(t[i * out + o]).toBe(plain[o * inp + i]);
      }
  });
});
