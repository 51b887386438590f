// A new member for a fleet slot: the in-process worker (one worker, no
// --workers), or a `lorafleet-worker` process on loopback with the slot's GPU
// and an orphan timeout tied to the heartbeat timeout.
import type { FleetOptions } from './fleet.js';
import { InProcessWorker } from './in-process.js';
import type { Member, Roster } from './roster.js';
import { WorkerProcess } from './worker-process.js';

/** Starts slot `slot`'s worker and adds it to `roster` as 'starting'. */
export function spawnMember(
  roster: Roster,
  slot: number,
  endpoint: string,
  options: FleetOptions,
  on: { onInProcessEnd: (w: InProcessWorker) => void; onExit: (p: WorkerProcess) => void },
): Member {
  const id = roster.nextId();
  if (options.membership.kind === 'inprocess') {
    const worker = new InProcessWorker(endpoint, options.backend, on.onInProcessEnd);
    const member = roster.add(id, `worker ${id} (this process)`, slot);
    Object.assign(member, { inProcess: worker, status: 'starting' });
    return member;
  }
  const { gpus, heartbeatTimeoutMs } = options;
  const gpu = gpus && gpus.length > 0 ? gpus[slot % gpus.length] : undefined;
  const process = new WorkerProcess(id, endpoint, options.backend, on.onExit, options.log, {
    ...(gpu !== undefined ? { gpu } : {}),
    // Orphans of a coordinator that died exit soon after its heartbeats stop.
    timeoutSeconds: Math.max(10, Math.ceil((3 * heartbeatTimeoutMs) / 1000)),
  });
  const member = roster.add(id, `worker ${id} (pid ${process.pid})`, slot);
  member.process = process;
  member.status = 'starting';
  return member;
}
