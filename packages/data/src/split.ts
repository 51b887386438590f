// A deterministic train/validation split: the same (n, seed, fraction) gives
// the same split on every machine.

import { checkSeed, mixSeed, permutation } from './random.js';

export interface SplitOptions {
  seed: number;
  /** In [0, 1). Rounded to a count; at least 1 and at most n - 1 when > 0 and n >= 2. */
  validationFraction: number;
}

/** Its own stream, so a split and the sampler's epoch-0 order differ under one seed. */
const SPLIT_STREAM = 0x53504c54; // "SPLT"

/** Splits row ids 0..n-1; both lists ascending. */
export function splitIds(
  n: number,
  options: SplitOptions,
): { train: number[]; validation: number[] } {
  const { seed, validationFraction: f } = options;
  checkSeed(seed);
  if (!Number.isInteger(n) || n < 0)
    throw new RangeError(`n must be a non-negative integer, got ${n}`);
  if (!(f >= 0 && f < 1)) throw new RangeError(`validationFraction must be in [0, 1), got ${f}`);
  let count = Math.round(f * n);
  if (f > 0 && n >= 2) count = Math.min(Math.max(count, 1), n - 1);
  const order = permutation(n, mixSeed(seed, SPLIT_STREAM));
  const validation = Array.from(order.subarray(0, count)).sort((a, b) => a - b);
  const train = Array.from(order.subarray(count)).sort((a, b) => a - b);
  return { train, validation };
}

/** Splits items by splitIds over their indices; each part keeps the original order. */
export function splitTrainValidation<T>(
  items: readonly T[],
  options: SplitOptions,
): { train: T[]; validation: T[] } {
  const { train, validation } = splitIds(items.length, options);
  return {
    train: train.map((i) => items[i] as T),
    validation: validation.map((i) => items[i] as T),
  };
}
