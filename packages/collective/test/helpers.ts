// Shared by the in-process ring tests: rings on real tcp sockets, seeded inputs,
// the float64 reference sum, and a bitwise comparison.
import { expect } from 'vitest';
import { RingAllReduce, type RingOptions } from '../src/index.js';

/** n ranks in this process, each bound to a free 127.0.0.1 port, connected into a ring. */
export async function formRing(
  n: number,
  options: Partial<Omit<RingOptions, 'rank' | 'worldSize'>> = {},
): Promise<RingAllReduce[]> {
  const rings = await Promise.all(
    Array.from({ length: n }, (_, rank) =>
      RingAllReduce.bind({
        rank,
        worldSize: n,
        listen: 'tcp://127.0.0.1:*',
        timeoutMs: 5000,
        ...options,
      }),
    ),
  );
  const endpoints = rings.map((r) => r.endpoint);
  for (const ring of rings) ring.connect(endpoints);
  return rings;
}

/** A small deterministic generator (mulberry32), so failures reproduce. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One buffer per rank, values in [-1, 1) with a few larger ones to stress rounding. */
export function inputs(ranks: number, length: number, seed: number): Float32Array[] {
  const next = seeded(seed);
  return Array.from({ length: ranks }, () =>
    Float32Array.from({ length }, () => (next() * 2 - 1) * (next() < 0.05 ? 1000 : 1)),
  );
}

/** The reference: sum in float64, round once to float32. */
export function naiveSum(buffers: Float32Array[]): Float32Array {
  const length = buffers[0]?.length ?? 0;
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = buffers.reduce((s, b) => s + b[i]!, 0);
  return out;
}

/**
 * Every element within `relative` x (sum of |inputs|) of the reference; float32 summation in
 * ring order errs by at most (n - 1) float32 ulps of that magnitude.
 */
export function expectClose(
  got: Float32Array,
  want: Float32Array,
  buffers: Float32Array[],
  relative: number,
): void {
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const scale = buffers.reduce((s, b) => s + Math.abs(b[i]!), 0) || 1;
    worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / scale);
  }
  expect(worst).toBeLessThanOrEqual(relative);
}

/** All results byte for byte the same as rank 0's. */
export function expectBitwiseIdentical(results: Float32Array[]): void {
  const bytes = results.map((r) => Buffer.from(r.buffer, r.byteOffset, r.byteLength));
  for (let rank = 1; rank < bytes.length; rank++) {
    expect(bytes[rank]!.equals(bytes[0]!), `rank ${rank} differs from rank 0`).toBe(true);
  }
}

export function closeAll(rings: RingAllReduce[]): void {
  for (const ring of rings) ring.close();
}
