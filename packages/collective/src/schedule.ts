// The ring schedule, as pure functions of (rank, worldSize, buffer length).
//
// Reduce-scatter, ring step k = 0 .. n-2: rank r sends segment (r - k) mod n to
// rank r + 1 and adds the segment (r - k - 1) mod n it receives from rank r - 1
// into its own. Segment s thus starts at rank s and is summed in ring order,
// ((x_s + x_{s+1}) + x_{s+2}) + ... + x_{s-1}, one float32 addition per hop,
// and its full sum exists on exactly one rank, its owner (s - 1) mod n.
// All-gather, ring step k: rank r sends segment (r + 1 - k) mod n, starting
// with the one it owns, and overwrites segment (r - k) mod n with what it
// receives. Every rank ends with the owner's bytes for every segment.

export interface Segment {
  /** Element offset in the buffer. */
  start: number;
  length: number;
}

/** n segments covering `length` elements; sizes differ by at most one, and may be 0. */
export function segments(length: number, worldSize: number): Segment[] {
  const base = Math.floor(length / worldSize);
  const extra = length % worldSize;
  const out: Segment[] = [];
  for (let i = 0, start = 0; i < worldSize; i++) {
    const size = base + (i < extra ? 1 : 0);
    out.push({ start, length: size });
    start += size;
  }
  return out;
}

const mod = (a: number, n: number) => ((a % n) + n) % n;

export interface RingStep {
  send: number;
  receive: number;
}

export function reduceScatterStep(rank: number, worldSize: number, k: number): RingStep {
  return { send: mod(rank - k, worldSize), receive: mod(rank - k - 1, worldSize) };
}

export function allGatherStep(rank: number, worldSize: number, k: number): RingStep {
  return { send: mod(rank + 1 - k, worldSize), receive: mod(rank - k, worldSize) };
}

/** The rank that computes segment s's final sum. */
export function ownerOf(segment: number, worldSize: number): number {
  return mod(segment - 1, worldSize);
}

/** Frames of at most `maxElements` elements covering a segment; an empty segment is one empty frame. */
export function frames(length: number, maxElements: number): Segment[] {
  if (length === 0) return [{ start: 0, length: 0 }];
  const out: Segment[] = [];
  for (let start = 0; start < length; start += maxElements) {
    out.push({ start, length: Math.min(maxElements, length - start) });
  }
  return out;
}
