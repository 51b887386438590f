// Seeded randomness for shuffling. Our own generator, so every process, Node
// version and platform draws the same permutation from the same seed: the
// coordinator and the workers must agree on sample ids without talking.

const UINT32 = 4294967296;

/** Checks that a seed is an integer in [0, 2^32), the range the generator keys on. */
export function checkSeed(seed: number, what = 'seed'): number {
  if (!Number.isInteger(seed) || seed < 0 || seed >= UINT32) {
    throw new RangeError(`${what} must be an integer in [0, 2^32), got ${seed}`);
  }
  return seed;
}

/** murmur3's 32-bit finaliser: a bijection that spreads every input bit. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Combines a seed with a stream number (an epoch, a purpose) into a new seed.
 * For a fixed `seed` it is one-to-one in `stream`, so epochs never share a seed.
 */
export function mixSeed(seed: number, stream: number): number {
  const h = fmix32((seed + 0x9e3779b9) >>> 0);
  return fmix32(((h ^ (stream >>> 0)) + 0x7f4a7c15) >>> 0);
}

/** mulberry32: 32-bit state, fast, good enough for shuffling sample ids. */
export class Mulberry32 {
  private state: number;

  constructor(seed: number) {
    this.state = checkSeed(seed) >>> 0;
  }

  /** Uniform integer in [0, 2^32). */
  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform integer in [0, n), without modulo bias (rejects the short last block). */
  nextBelow(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > UINT32) {
      throw new RangeError(`nextBelow needs an integer bound in [1, 2^32], got ${n}`);
    }
    const reject = (UINT32 - n) % n; // = 2^32 mod n: values below this are over-represented
    for (;;) {
      const r = this.nextUint32();
      if (r >= reject) return r % n;
    }
  }
}

/** Fisher-Yates shuffle in place, driven by `rng`. */
export function shuffleInPlace(values: { length: number; [i: number]: number }, rng: Mulberry32) {
  for (let i = values.length - 1; i > 0; i--) {
    const j = rng.nextBelow(i + 1);
    const tmp = values[i] as number;
    values[i] = values[j] as number;
    values[j] = tmp;
  }
}

/** A uniformly random permutation of 0..n-1, a pure function of (n, seed). */
export function permutation(n: number, seed: number): Uint32Array {
  if (!Number.isInteger(n) || n < 0 || n > UINT32) {
    throw new RangeError(`permutation size must be an integer in [0, 2^32], got ${n}`);
  }
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  shuffleInPlace(out, new Mulberry32(seed));
  return out;
}
