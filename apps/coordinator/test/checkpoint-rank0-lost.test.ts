// Rank 0 lost at the moment a checkpoint is requested (CI's chaos seed 52008:
// "cannot send checkpointRequest: Host unreachable"): the ROUTER cannot route
// the request, so the send marks rank 0's member lost, and the checkpoint must
// end at once with MembersLost (recovery re-forms the ring and writes it
// again), not wait for a reply from the member that holds rank 0 next, which
// never got the request. A real WorkerFleet (ROUTER, mandatory routing) with
// two joined peers (DEALER sockets that say Hello); rank 0's route is cut by
// giving its member an identity no peer has, which is what the ROUTER sees of
// a peer that is gone, without waiting on a disconnect.
import { join } from 'node:path';
import { Dealer } from 'zeromq';
import { SAMPLER_START } from '@lorafleet/data';
import { encodeControl } from '@lorafleet/protocol';
import { UNASSIGNED_RUN } from '@lorafleet/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetCheckpointer } from '../src/distributed/checkpoints.js';
import { MembersLost, WorkerFleet } from '../src/distributed/fleet.js';
import type { RunPlan } from '../src/distributed/run-plan.js';
import { makeTempDir, removeDir } from './helpers.js';

const sockets: Dealer[] = [];
let dir: string | undefined;

beforeAll(async () => {
  dir = await makeTempDir('rank0-lost');
});

afterAll(async () => {
  for (const s of sockets) s.close();
  await removeDir(dir);
});

/** A joined peer: one valid Hello, then silence (heartbeats are not needed within the test). */
async function peer(endpoint: string, name: string): Promise<void> {
  const dealer = new Dealer({ linger: 0 });
  sockets.push(dealer);
  dealer.connect(endpoint);
  const hello = {
    ...{ workerId: `${name}:1`, host: name, pid: 1, device: 'none', backend: 'wasm' },
    ...{ capabilities: [], dataEndpoint: 'tcp://127.0.0.1:9', curvePublicKey: '' },
  };
  await dealer.send(
    encodeControl({ runId: UNASSIGNED_RUN, body: { case: 'hello', value: hello } }),
  );
}

/** A fleet of two external workers in a ring, rank 0 first to join. */
async function twoWorkerFleet(): Promise<WorkerFleet> {
  let joined = false;
  const fleet = WorkerFleet.start({
    membership: { kind: 'listen', endpoint: 'tcp://127.0.0.1:0', workers: 2 },
    ...{ runId: 'run-rank0-lost', backend: 'wasm', maxRestarts: 0 },
    ...{ helloTimeoutMs: 20_000, heartbeatTimeoutMs: 120_000 },
    log: (line) => {
      const endpoint = /waiting for workers: 0\/2 \(on (\S+)\)/.exec(line)?.[1];
      if (!endpoint || joined) return;
      joined = true;
      void peer(endpoint, 'first').then(() => peer(endpoint, 'second'));
    },
  });
  const started = await fleet;
  started.setRing(started.members());
  return started;
}

describe('a checkpoint whose request cannot reach rank 0', () => {
  it('ends at once with MembersLost for that member, not a wait on the next rank 0', async () => {
    const fleet = await twoWorkerFleet();
    try {
      const [rank0, rank1] = fleet.active();
      expect([rank0!.rank, rank1!.rank]).toEqual([0, 1]);
      rank0!.identity = Buffer.from('a peer that is gone');
      const plan = {
        config: { seed: 1 },
        sampler: { stepsPerEpoch: 10 },
        steps: 10,
      } as unknown as RunPlan;
      // A wait on the wrong member would end by this timeout, as a FleetError.
      const checkpointer = new FleetCheckpointer(fleet, join(dir!, 'run'), plan, {}, 3, 15_000);
      const error = await checkpointer.save(4, SAMPLER_START, 100).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(MembersLost);
      expect((error as MembersLost).members).toEqual([rank0]);
      expect(rank0!.lostReason).toMatch(/^cannot send checkpointRequest: /);
      // Rank 0 now names the other member: it was never asked, and would never answer.
      expect(fleet.memberOf(0)).toBe(rank1);
    } finally {
      fleet.close();
    }
  }, 60_000);
});
