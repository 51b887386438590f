// The key a micro-batch's dropout masks are seeded with (RunOptions.rowKeys):
// a hash of its sample ids, so the same rows draw the same masks on whichever
// worker, and at whichever place in the accumulation, they land.
import { lowbias32 } from '@lorafleet/core';

/** A key of a micro-batch's sample ids (their order included): 32 bits, for dropout seeds. */
export function rowsKey(ids: readonly number[]): number {
  let key = lowbias32(ids.length);
  for (const id of ids) key = lowbias32(key ^ lowbias32((id >>> 0) ^ Math.floor(id / 2 ** 32)));
  return key;
}
