// What the fused attention tests share: seeded inputs and the comparison.
import { expect } from 'vitest';
import { Rng } from '../src/index.js';

/** `size` normal values times `scale`, from `seed`. */
export function values(size: number, seed: number, scale: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: size }, () => rng.normal() * scale);
}

/** max |a - b| / (1 + |b|). */
export function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++)
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / (1 + Math.abs(b[i]!)));
  return worst;
}
