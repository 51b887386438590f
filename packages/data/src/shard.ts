// Splitting a global batch among data-parallel ranks.
//
// Contiguous blocks: rank r gets the r-th slice, and the first (n mod W) ranks
// get one more id than the rest, so sizes differ by at most one and the
// shards concatenated in rank order are the global batch in order. When
// W > n, ranks n..W-1 get nothing (and contribute zero tokens to the step).

/** The half-open range [start, end) of a list of `total` ids that `rank` owns. */
export function shardBounds(
  total: number,
  rank: number,
  worldSize: number,
): { start: number; end: number } {
  if (!Number.isInteger(worldSize) || worldSize < 1) {
    throw new RangeError(`worldSize must be an integer >= 1, got ${worldSize}`);
  }
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
    throw new RangeError(`rank must be an integer in [0, ${worldSize}), got ${rank}`);
  }
  if (!Number.isInteger(total) || total < 0) {
    throw new RangeError(`total must be a non-negative integer, got ${total}`);
  }
  const base = Math.floor(total / worldSize);
  const extra = total % worldSize;
  const start = rank * base + Math.min(rank, extra);
  return { start, end: start + base + (rank < extra ? 1 : 0) };
}

/** The ids of the global batch that `rank` of `worldSize` trains on. */
export function shard<T>(ids: readonly T[], rank: number, worldSize: number): T[] {
  const { start, end } = shardBounds(ids.length, rank, worldSize);
  return ids.slice(start, end);
}
