// How a `lorafleet-worker` process ends, as its exit status: the coordinator
// that spawned it reads the status to tell a worker that cannot compute on
// this machine (every replacement would fail alike) from one that failed.
export const WORKER_EXIT = {
  /** Shut down by the coordinator. */
  done: 0,
  /** Any failure: the coordinator may replace the worker. */
  failed: 1,
  /** Bad flags: nothing ran. */
  usage: 2,
  /** Its compute backend (and GPU) cannot start here; the last line of stderr says why. */
  backend: 3,
  /** SIGTERM before it joined a run (with --rejoin, also between runs): nothing to wait for (128 + 15, as shells report it). */
  terminated: 143,
  /** --rejoin: SIGINT between runs, or a second signal during one (128 + 2). */
  interrupted: 130,
} as const;

/** The prefix of the daemon's own stderr lines, before the reason it failed. */
export const WORKER_LOG_PREFIX = 'lorafleet-worker: ';
