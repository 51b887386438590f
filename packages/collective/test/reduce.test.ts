// The all-reduce's add (WebAssembly SIMD) against JavaScript's float32 sums, bit for bit.
import { describe, expect, it } from 'vitest';
import { encodeFloats } from '@lorafleet/protocol';
import { addPayload } from '../src/reduce.js';
import { inputs } from './helpers.js';

/** float32(a + b) for every element, computed the plain way. */
const reference = (a: Float32Array, b: Float32Array) => a.map((x, i) => x + b[i]!);
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

describe('addPayload', () => {
  // Around the module's 16384-element block and its 4-lane width.
  const lengths = [0, 1, 3, 4, 5, 16383, 16384, 16385, 40_001];

  it.each(lengths)('adds %i f32 elements as float32(a + b), bit for bit', (length) => {
    const [a, b] = inputs(2, length, length);
    const target = Float32Array.from(a!);
    addPayload(encodeFloats(b!, 'f32'), target, 'f32', new Float32Array(0));
    expect(bits(target)).toEqual(bits(reference(a!, b!)));
  });

  it('reads a payload at any byte offset (a received frame may sit at an odd one)', () => {
    const [a, b] = inputs(2, 20_003, 7);
    for (const shift of [1, 2, 3]) {
      const room = new Uint8Array(b!.byteLength + shift);
      room.set(new Uint8Array(b!.buffer), shift);
      const target = Float32Array.from(a!);
      addPayload(room.subarray(shift), target, 'f32', new Float32Array(0));
      expect(bits(target)).toEqual(bits(reference(a!, b!)));
    }
  });

  it('keeps IEEE special cases: subnormals, signed zeros, infinities, NaN, overflow', () => {
    const tiny = 2 ** -149;
    const a = Float32Array.from([tiny, -0, 0, Infinity, -Infinity, NaN, 3.4e38, 1, tiny * 3]);
    const b = Float32Array.from([tiny, -0, -0, -Infinity, 1, 2, 3.4e38, 2 ** -24, -tiny]);
    const target = Float32Array.from(a);
    addPayload(encodeFloats(b, 'f32'), target, 'f32', new Float32Array(0));
    const want = reference(a, b);
    expect(Array.from(target)).toEqual(Array.from(want)); // toEqual tells -0 from 0, NaN equals NaN
    expect(target[0]).toBe(2 * tiny); // not flushed to zero
    expect(target[6]).toBe(Infinity);
  });

  it.each(['f16', 'bf16'] as const)('adds a %s payload as its float32 values', (dtype) => {
    const [a, b] = inputs(2, 16_390, 11);
    const wire = encodeFloats(b!, dtype);
    const decoded = new Float32Array(b!.length);
    const target = Float32Array.from(a!);
    addPayload(wire, target, dtype, new Float32Array(b!.length));
    // The same add of the decoded values.
    addPayload(wire, decoded, dtype, new Float32Array(b!.length));
    expect(bits(target)).toEqual(bits(reference(a!, decoded)));
  });
});
