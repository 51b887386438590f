// Ctrl-C (SIGINT) and SIGTERM during training: the first finishes the step in
// flight, saves, stops the workers and exits (130 for SIGINT, 143 for
// SIGTERM, as shells and cluster engines expect). SIGTERM is what Slurm,
// Kubernetes and systemd send before SIGKILL, so it has a bounded grace
// period: past it the process exits at once, keeping the last checkpoint. A
// second signal quits at once. Before training starts (workers joining and
// loading) there is nothing to finish or save: a signal then quits at once.

/** After SIGTERM, how long saving may take: inside Slurm's and Kubernetes' defaults (30 s). */
export const TERM_GRACE_SECONDS = 25;

export type StopSignal = 'SIGINT' | 'SIGTERM';

export const EXIT_CODES: Record<StopSignal, number> = { SIGINT: 130, SIGTERM: 143 };

export interface Interrupt {
  /** Whether a stop was asked for. */
  readonly requested: boolean;
  /** Which signal asked for it. */
  readonly signal: StopSignal | undefined;
  /** From now on a signal finishes the step and saves; before this call it quits at once. */
  training(): void;
  /** Stops listening (after the loop). */
  dispose(): void;
}

export function onInterrupt(graceSeconds = TERM_GRACE_SECONDS): Interrupt {
  let signal: StopSignal | undefined;
  let started = false;
  const handler = (received: StopSignal) => {
    if (signal) process.exit(EXIT_CODES[received]);
    signal = received;
    if (!started) {
      // The spawned workers go with this process (the fleet kills them on exit);
      // joined ones hear no coordinator and exit too. The newest checkpoint stays.
      console.error(`\n${received} before the first step: nothing to save; stopping now`);
      process.exit(EXIT_CODES[received]);
    }
    if (received === 'SIGINT') {
      console.error(
        '\ninterrupted: finishing this step and saving; press Ctrl-C again to quit at once',
      );
      return;
    }
    console.error(
      `\nSIGTERM: finishing this step, saving and stopping the workers (at most ${graceSeconds} s)`,
    );
    setTimeout(() => {
      console.error(
        `SIGTERM: not done within ${graceSeconds} s; exiting now (the last checkpoint is kept)`,
      );
      process.exit(EXIT_CODES.SIGTERM);
    }, graceSeconds * 1000).unref();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    get requested() {
      return signal !== undefined;
    },
    get signal() {
      return signal;
    },
    training: () => {
      started = true;
    },
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}
