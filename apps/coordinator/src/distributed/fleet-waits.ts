// How the fleet's waits wake: every change (a message, a loss, an exit) signals
// all waiters, and each re-checks its own condition. Every wait is bounded,
// and a fleet failure ends all of them at once.
import { FleetError } from './roster.js';

export class FleetWaits {
  private waiters: (() => void)[] = [];

  /** `failure()`: the fleet's failure, if it has one; every wait then throws it. */
  constructor(private readonly failure: () => FleetError | undefined) {}

  /** Wakes every wait, to re-check its condition. */
  signal(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves at the next signal, or after `timeoutMs`. */
  changed(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(1, timeoutMs));
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Waits until `ready()` holds, the fleet fails, or `timeoutMs` passes (then false). */
  async waitFor(ready: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const failure = this.failure();
      if (failure) throw failure;
      if (ready()) return true;
      const left = deadline - performance.now();
      if (left <= 0) return false;
      await this.changed(left);
    }
  }

  /** Waits until `ready` holds; fails on a fleet failure or at the deadline, saying `what()` it waited for. */
  async until(ready: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      // After `ready`, which may itself find a protocol error or a loss.
      const done = ready();
      const failure = this.failure();
      if (failure) throw failure;
      if (done) return;
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new FleetError(
          `timed out after ${(timeoutMs / 1000).toFixed(0)} s waiting for ${what()}`,
        );
      }
      await this.changed(left);
    }
  }
}
