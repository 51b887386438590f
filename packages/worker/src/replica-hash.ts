// A cheap 64-bit fingerprint of a replica's parameters. Replicas of a
// data-parallel run must stay bitwise identical, so the coordinator compares
// these after every step; a cryptographic hash would cost more than the
// step's update for nothing (there is no adversary here, only drift).

/** 8 bytes: two independent 32-bit multiplicative hashes over the float32 bit patterns. */
export function replicaHash(values: Float32Array): Uint8Array {
  // Float32Array offsets are multiples of 4, so the same bytes read as words.
  const words = new Uint32Array(values.buffer, values.byteOffset, values.length);
  let h1 = 0x811c9dc5 ^ words.length; // FNV-1a offset basis
  let h2 = 0x9747b28c;
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    h1 = Math.imul(h1 ^ w, 0x01000193); // FNV prime
    h2 = Math.imul(h2 ^ w, 0x5bd1e995); // MurmurHash2's multiplier
    h2 ^= h2 >>> 15;
  }
  // Final avalanche, so one flipped low bit changes both halves.
  h1 = Math.imul(h1 ^ (h1 >>> 16), 0x85ebca6b);
  h2 = Math.imul(h2 ^ (h2 >>> 13), 0xc2b2ae35);
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint32(0, (h1 ^ (h1 >>> 16)) >>> 0);
  view.setUint32(4, (h2 ^ (h2 >>> 16)) >>> 0);
  return out;
}

export function hashHex(hash: Uint8Array): string {
  return Array.from(hash, (b) => b.toString(16).padStart(2, '0')).join('');
}
