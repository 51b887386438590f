// Buffers for a recorded plan by liveness: a buffer's life runs from the first
// step that touches it to the last; buffers whose lives do not overlap share
// memory. Steps run in order on one queue, so a buffer freed after step i can
// hold a value that step j > i writes. Pinned buffers (host inputs, outputs,
// parameters) live through the whole plan.

export interface BufferUse {
  /** Bytes the value needs. */
  bytes: number;
  /** First and last step index that reads or writes it. */
  first: number;
  last: number;
  /** Lives from step 0 to the end (written by the host, or read after the plan). */
  pinned: boolean;
}

export interface Allocation {
  /** For each value, the index of the physical buffer it lives in. */
  slot: number[];
  /** Each physical buffer's size in bytes. */
  sizes: number[];
}

/**
 * Assigns each value a physical buffer: at each step, values whose life
 * ended before it return their buffer; values born at it take the smallest
 * free buffer that fits (growing none), or a new one. Greedy best fit.
 */
export function allocateByLiveness(uses: readonly BufferUse[], steps: number): Allocation {
  const slot = new Array<number>(uses.length).fill(-1);
  const sizes: number[] = [];
  const free: number[] = [];
  const born = new Map<number, number[]>();
  const dies = new Map<number, number[]>();
  uses.forEach((u, i) => {
    const first = u.pinned ? 0 : u.first;
    const last = u.pinned ? steps : u.last;
    born.set(first, [...(born.get(first) ?? []), i]);
    dies.set(last, [...(dies.get(last) ?? []), i]);
  });
  for (let step = 0; step <= steps; step++) {
    // Largest first, so that a small value does not take the only large free buffer.
    const newborn = (born.get(step) ?? []).sort((a, b) => uses[b]!.bytes - uses[a]!.bytes);
    for (const i of newborn) {
      const need = uses[i]!.bytes;
      let best = -1;
      for (const [k, s] of free.entries()) {
        if (sizes[s]! >= need && (best < 0 || sizes[s]! < sizes[free[best]!]!)) best = k;
      }
      if (best >= 0) slot[i] = free.splice(best, 1)[0]!;
      else slot[i] = sizes.push(need) - 1;
    }
    for (const i of dies.get(step) ?? []) free.push(slot[i]!);
  }
  return { slot, sizes };
}
