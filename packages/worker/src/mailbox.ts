// The worker's side of the control plane during a run: a mailbox that reads
// the coordinator's messages continuously (so a long step still sees an
// Abort), a step that stops on Abort, Shutdown or Error, and rebinding the
// ring's socket after a Regroup.
import { RingAllReduce } from '@lorafleet/collective';
import type { ControlMessage, StepDone } from '@lorafleet/protocol';
import type { CoordinatorLink } from './coordinator-link.js';

export type StepOutcome =
  { kind: 'done'; value: StepDone } | { kind: 'aborted' } | { kind: 'failed'; error: Error };

/**
 * Runs a step while watching the mailbox: heartbeats are consumed; an Abort,
 * Shutdown or Error stops the step (`interrupt` breaks its all-reduce) and is
 * left in the mailbox for the caller to handle.
 */
export async function stepOrAbort(
  mailbox: Mailbox,
  run: (signal: AbortSignal) => Promise<StepDone>,
  interrupt: () => void,
): Promise<StepOutcome> {
  const controller = new AbortController();
  const running: Promise<StepOutcome> = run(controller.signal).then(
    (value) => ({ kind: 'done', value }),
    (error: unknown) => ({ kind: 'failed', error: error as Error }),
  );
  for (;;) {
    const first = await Promise.race([running, mailbox.ready().then(() => undefined)]);
    if (first !== undefined) return first;
    const next = mailbox.peek();
    if (next === undefined) {
      // The link failed (the coordinator is silent or gone): stop the step.
      controller.abort(new Error('the coordinator link failed'));
      interrupt();
      await running;
      return { kind: 'aborted' };
    }
    if (next.body.case === 'heartbeat') {
      mailbox.drop();
      continue;
    }
    if (['abort', 'shutdown', 'error'].includes(next.body.case)) {
      controller.abort(new Error(`stopped by ${next.body.case}`));
      interrupt();
      const outcome = await running;
      // A step that finished anyway is dropped too: the coordinator aborted it.
      return outcome.kind === 'failed' || outcome.kind === 'done' ? { kind: 'aborted' } : outcome;
    }
    // Anything else must wait for the step: it stays queued.
    await running.then(() => undefined);
  }
}

/** Binds a ring on `listen`, retrying while the previous ring's socket releases the port. */
export async function bindRing(
  options: Parameters<typeof RingAllReduce.bind>[0],
): Promise<RingAllReduce> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await RingAllReduce.bind(options);
    } catch (error) {
      if (attempt >= 40 || !/in use/i.test(String(error))) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/**
 * The coordinator's messages, read continuously (so a long step still sees an
 * Abort) and queued; next() takes them in order. The link's timeout on
 * coordinator silence applies throughout.
 */
export class Mailbox {
  private readonly queue: ControlMessage[] = [];
  private failure: Error | undefined;
  private waiters: (() => void)[] = [];
  private waitingFor = 'a message';
  private closed = false;

  constructor(private readonly link: CoordinatorLink) {
    void this.pump();
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        const message = await this.link.receive(this.waitingFor);
        // A heartbeat has done its job by arriving (the link's silence timer restarts).
        if (message.body.case === 'heartbeat') continue;
        if (this.queue.length >= MAILBOX_LIMIT) {
          throw new Error(`more than ${MAILBOX_LIMIT} unprocessed messages from the coordinator`);
        }
        this.queue.push(message);
        this.wake();
      }
    } catch (error) {
      if (!this.closed) this.failure = error as Error;
      this.wake();
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves once a message waits (or the link failed). */
  ready(): Promise<void> {
    if (this.queue.length > 0 || this.failure) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  peek(): ControlMessage | undefined {
    return this.queue[0];
  }

  drop(): void {
    this.queue.shift();
  }

  async next(waitingFor: string): Promise<ControlMessage> {
    this.waitingFor = waitingFor;
    await this.ready();
    const message = this.queue.shift();
    if (message) return message;
    throw this.failure!;
  }

  close(): void {
    this.closed = true;
  }
}

/** Messages the coordinator may have queued ahead of us; more means a broken or hostile peer. */
const MAILBOX_LIMIT = 1024;
