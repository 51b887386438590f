// SIGTERM for a worker whose coordinator gets it too (every task of a
// launched job; rank 0's worker beside its coordinator): in a run, the
// coordinator finishes the step, saves a checkpoint and shuts this worker
// down, so the worker waits for it; before Welcome there is no run to wait
// for, and it exits at once.
import { WORKER_EXIT } from './exit-status.js';

export interface SigtermWait {
  /** WorkerOptions.onWelcome: from then on SIGTERM waits for the coordinator. */
  onWelcome: () => void;
  /** Stops listening. */
  dispose: () => void;
}

export function waitForCoordinatorOnSigterm(log: (line: string) => void): SigtermWait {
  let joined = false;
  const handler = () => {
    if (joined) return log('SIGTERM: the coordinator saves a checkpoint and stops this worker');
    log('SIGTERM before joining a run: exiting');
    process.exit(WORKER_EXIT.terminated);
  };
  process.on('SIGTERM', handler);
  return {
    onWelcome: () => {
      joined = true;
    },
    dispose: () => process.off('SIGTERM', handler),
  };
}
