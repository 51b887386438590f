// Batches of similar lengths: transformers' LengthGroupedSampler
// (`train_sampling_strategy="group_by_length"`), so that padding each
// micro-batch to its longest row (--padding longest) pads little.
//
// A shuffled epoch order is cut into megabatches of `mult` global batches;
// each megabatch is sorted by length, longest first (a stable sort: equal
// lengths keep their shuffled order); and the longest row of all is swapped
// to the very front, so a batch that does not fit in memory fails at the
// first step rather than hours in. Consecutive global batches then hold rows
// of similar lengths while the megabatches keep the epoch random.

/** transformers' default: 50 batches a megabatch, or a quarter of the data when that is fewer. */
export function megabatchMultiple(datasetSize: number, batchSize: number): number {
  return Math.max(1, Math.min(Math.floor(datasetSize / (batchSize * 4)), 50));
}

/**
 * transformers' `get_length_grouped_indices(lengths, batch_size)` for the
 * shuffled order `shuffled` (its `torch.randperm`): the same ids in the
 * order whose consecutive `batchSize` slices have similar lengths.
 */
export function lengthGroupedOrder(
  shuffled: ArrayLike<number>, // [N] a permutation of 0..N-1
  lengths: ArrayLike<number>, // [N] each row's length
  batchSize: number,
): Uint32Array {
  const n = shuffled.length;
  if (lengths.length !== n) {
    throw new RangeError(`lengths has ${lengths.length} entries for ${n} rows`);
  }
  const size = megabatchMultiple(n, batchSize) * batchSize;
  const megabatches: number[][] = [];
  for (let start = 0; start < n; start += size) {
    const megabatch = Array.from(
      { length: Math.min(size, n - start) },
      (_, i) => shuffled[start + i]!,
    );
    megabatches.push(megabatch.sort((a, b) => lengths[b]! - lengths[a]!)); // stable, longest first
  }
  // The megabatch whose first (longest) row is the longest of all: the first such, as torch.argmax.
  let longest = 0;
  for (let m = 1; m < megabatches.length; m++) {
    if (lengths[megabatches[m]![0]!]! > lengths[megabatches[longest]![0]!]!) longest = m;
  }
  const [first, other] = [megabatches[0]!, megabatches[longest]!];
  [first[0], other[0]] = [other[0]!, first[0]!];
  return Uint32Array.from(megabatches.flat());
}
