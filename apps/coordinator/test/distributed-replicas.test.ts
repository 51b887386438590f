// The coordinator's replica check: equal hashes pass; any difference names the ranks.
import { describe, expect, it } from 'vitest';
import { checkReplicas } from '../src/distributed/replicas.js';

const hash = (...bytes: number[]) => Uint8Array.from(bytes);

describe('checkReplicas', () => {
  it('passes replicas with the same hash at the planned step', () => {
    expect(() =>
      checkReplicas(
        3,
        [0, 1, 2].map(() => ({ step: 3, replicaHash: hash(1, 2, 3, 4) })),
      ),
    ).not.toThrow();
  });

  it('names the ranks of each differing hash', () => {
    const reports = [hash(1, 2), hash(1, 3), hash(1, 2)].map((replicaHash) => ({
      step: 7,
      replicaHash,
    }));
    expect(() => checkReplicas(7, reports)).toThrow(
      'step 7: the replicas diverged (parameter hashes differ: ranks 0, 2: 0102; rank 1: 0103)',
    );
  });

  it('refuses a report of another step', () => {
    const reports = [
      { step: 4, replicaHash: hash(9) },
      { step: 5, replicaHash: hash(9) },
    ];
    expect(() => checkReplicas(4, reports)).toThrow(
      'rank 1 reported step 5 where step 4 was planned',
    );
  });
});
