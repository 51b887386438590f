// The coordinator's end of the control plane: a ROUTER, N workers (spawned
// here on loopback, or external daemons that join a --listen endpoint, ranked
// in the order their Hellos arrive), and their messages sorted into one inbox
// per rank. Every wait is bounded, and fails at once when a worker exits,
// reports an Error, or stays silent past the deadline, naming the ranks it
// waited for.
import { Router } from 'zeromq';
import type { BackendName } from '@lorafleet/core';
import { type ControlBody, type Hello, decodeControl, encodeControl } from '@lorafleet/protocol';
import { UNASSIGNED_RUN } from '@lorafleet/worker';
import { WorkerProcess } from './worker-process.js';

/** Where the workers come from. */
export type Membership =
  | { kind: 'spawn'; workers: number }
  /** External `lorafleet-worker --coordinator ENDPOINT` daemons; the first `workers` Hellos join. */
  | { kind: 'listen'; endpoint: string; workers: number };

export interface FleetOptions {
  membership: Membership;
  runId: string;
  backend: BackendName;
  /** How long the workers may take to say Hello. */
  helloTimeoutMs: number;
  /** Lines about the fleet (worker output, dropped frames). */
  log: (line: string) => void;
}

/** Why a run stopped: a worker failed, exited, or stayed silent. */
export class FleetError extends Error {
  override name = 'FleetError';
}

type Case = ControlBody['case'];
type BodyOf<K extends Case> = Extract<ControlBody, { case: K }>['value'];

interface Member {
  /** "worker rank 1 (pid 4242)", or the Hello's worker id for an external one. */
  name: string;
  /** Only for the workers this coordinator spawned. */
  process?: WorkerProcess;
  identity?: Buffer;
  hello?: Hello;
  inbox: ControlBody[];
}

/** Heartbeats while the coordinator waits, so idle workers know it is alive. */
const HEARTBEAT_MS = 2000;

export class WorkerFleet {
  private readonly members: Member[] = [];
  private failure: FleetError | undefined;
  private waiters: (() => void)[] = [];
  private stopping = false;
  private closed = false;
  private sending: Promise<void> = Promise.resolve();
  private readonly heartbeat: NodeJS.Timeout;

  private constructor(
    private readonly router: Router,
    readonly endpoint: string,
    private readonly options: FleetOptions,
  ) {
    this.heartbeat = setInterval(() => this.beat(), HEARTBEAT_MS);
    this.heartbeat.unref();
    // Workers run in their own process groups: take them down if we die first.
    process.on('exit', this.killOnExit);
  }

  private readonly killOnExit = () => {
    for (const m of this.members) m.process?.kill();
  };

  /** Binds the ROUTER, spawns the workers (or waits for them to join) and waits for every Hello. */
  static async start(options: FleetOptions): Promise<WorkerFleet> {
    const { membership } = options;
    // No authentication yet: spawned fleets stay on loopback; --listen
    // elsewhere needs --allow-remote (checked by the caller).
    const router = new Router({ mandatory: true, linger: 1000, sendTimeout: 10_000 });
    const endpoint = membership.kind === 'listen' ? membership.endpoint : 'tcp://127.0.0.1:*';
    try {
      await router.bind(endpoint);
    } catch (error) {
      router.close();
      throw new FleetError(`cannot listen on ${endpoint}: ${(error as Error).message}`);
    }
    const fleet = new WorkerFleet(router, router.lastEndpoint!, options);
    void fleet.read();
    try {
      if (membership.kind === 'spawn') {
        for (let rank = 0; rank < membership.workers; rank++) fleet.spawn(rank);
        await fleet.until((m) => m.hello !== undefined, options.helloTimeoutMs, 'Hello');
      } else {
        await fleet.awaitJoins(membership.workers, options.helloTimeoutMs);
      }
      return fleet;
    } catch (error) {
      fleet.close();
      throw error;
    }
  }

  get size(): number {
    return this.members.length;
  }

  /** Every rank's Hello, by rank. */
  hellos(): Hello[] {
    return this.members.map((m) => m.hello!);
  }

  /** Sends one message; sends are queued, as a ZeroMQ socket takes one at a time. */
  send(rank: number, body: ControlBody): Promise<void> {
    const member = this.members[rank]!;
    const frame = encodeControl({ runId: this.options.runId, body });
    const sent = this.sending.then(async () => {
      try {
        await this.router.send([member.identity!, frame]);
      } catch (error) {
        throw new FleetError(
          `cannot send ${body.case} to ${member.name}: ${(error as Error).message}`,
        );
      }
    });
    this.sending = sent.catch(() => undefined);
    return sent;
  }

  async broadcast(body: ControlBody): Promise<void> {
    for (let rank = 0; rank < this.size; rank++) await this.send(rank, body);
  }

  /** The next message of kind `kind` from each of `ranks` (default: all), by rank. */
  async collect<K extends Case>(
    kind: K,
    timeoutMs: number,
    ranks: readonly number[] = this.members.map((_, r) => r),
  ): Promise<BodyOf<K>[]> {
    const wanted = new Set(ranks);
    await this.until((m, rank) => !wanted.has(rank) || this.peek(m, kind), timeoutMs, kind);
    // peek() left each wanted inbox starting with a message of `kind`.
    return ranks.map((rank) => this.members[rank]!.inbox.shift()!.value as BodyOf<K>);
  }

  /**
   * Sends Shutdown and waits for every spawned worker to exit 0; kills the
   * ones that do not. External workers exit on their own (the socket lingers
   * until Shutdown has left).
   */
  async stop(reason: string, timeoutMs: number): Promise<void> {
    this.stopping = true;
    await this.broadcast({ case: 'shutdown', value: { reason } });
    const spawned = this.members.flatMap((m) => (m.process ? [m.process] : []));
    const deadline = performance.now() + timeoutMs;
    while (spawned.some((p) => !p.exit) && performance.now() < deadline) {
      await this.changed(deadline - performance.now());
    }
    const bad = spawned.filter((p) => p.exit?.code !== 0);
    this.close();
    if (bad.length > 0) {
      const why = (p: WorkerProcess) =>
        (p.exit
          ? p.describeExit()
          : `${p.name} did not exit within ${timeoutMs / 1000} s (killed)`) + p.lastWords();
      throw new FleetError(`after Shutdown: ${bad.map(why).join('\n')}`);
    }
  }

  /** Kills whatever still runs and releases the socket. Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    process.off('exit', this.killOnExit);
    this.killOnExit();
    this.router.close();
    this.signal();
  }

  private spawn(rank: number): void {
    const process = new WorkerProcess(
      rank,
      this.endpoint,
      this.options.backend,
      (p) => this.onExit(p),
      this.options.log,
    );
    this.members.push({ name: process.name, process, inbox: [] });
  }

  /** Waits for `workers` external Hellos, printing "waiting for workers: k/N" as they come. */
  private async awaitJoins(workers: number, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    let shown = -1;
    for (;;) {
      if (this.failure) throw this.failure;
      const joined = this.members.length;
      if (joined !== shown) {
        this.options.log(`waiting for workers: ${joined}/${workers} (on ${this.endpoint})`);
        shown = joined;
      }
      if (joined === workers) return;
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new FleetError(
          `timed out after ${(timeoutMs / 1000).toFixed(0)} s waiting for workers: ${joined}/${workers} ` +
            `joined ${this.endpoint}; start the rest with \`lorafleet-worker --coordinator ${this.endpoint}\` ` +
            '(or raise --join-timeout)',
        );
      }
      await this.changed(left);
    }
  }

  private onExit(p: WorkerProcess): void {
    if (!this.stopping || p.exit?.code !== 0) {
      this.fail(`${p.describeExit()} before the run finished${p.lastWords()}`);
    }
    this.signal();
  }

  private fail(message: string): void {
    if (!this.stopping) this.failure ??= new FleetError(message);
    this.signal();
  }

  /** Waits until `ready` holds for every member; fails on failure or at the deadline. */
  private async until(
    ready: (m: Member, rank: number) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const missing = this.members.filter((m, rank) => !ready(m, rank));
      // After `ready`, which may itself find a protocol error.
      if (this.failure) throw this.failure;
      if (missing.length === 0) return;
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new FleetError(
          `timed out after ${(timeoutMs / 1000).toFixed(0)} s waiting for ${what} from ` +
            missing.map((m) => m.name + (m.process?.lastWords() ?? '')).join(', '),
        );
      }
      await this.changed(left);
    }
  }

  /** Whether `kind` waits in the inbox; heartbeats are skipped, any other message is a protocol error. */
  private peek(m: Member, kind: Case): boolean {
    if (kind !== 'heartbeat') m.inbox = m.inbox.filter((b) => b.case !== 'heartbeat');
    const first = m.inbox[0];
    if (first && first.case !== kind) {
      this.fail(`${m.name} sent ${first.case} where ${kind} was expected`);
    }
    return first !== undefined && first.case === kind;
  }

  private changed(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(1, timeoutMs));
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private signal(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  private async read(): Promise<void> {
    try {
      for await (const [identity, frame, ...rest] of this.router) {
        if (identity && frame && rest.length === 0) this.route(identity, frame);
        else this.options.log(`coordinator: dropped a ${1 + rest.length}-part message`);
      }
    } catch (error) {
      if (!this.closed) this.fail(`the control socket failed: ${(error as Error).message}`);
    }
  }

  private route(identity: Buffer, frame: Buffer): void {
    const decoded = decodeControl(frame);
    if (!decoded.ok) {
      this.options.log(`coordinator: dropped a bad frame: ${decoded.error.message}`);
      return;
    }
    const { runId, body } = decoded.message;
    if (body.case === 'hello') {
      const member = this.memberFor(identity, body.value);
      if (!member || (runId !== this.options.runId && runId !== UNASSIGNED_RUN)) {
        const why =
          this.options.membership.kind === 'spawn'
            ? 'not a worker this run spawned'
            : `the run already has its ${this.options.membership.workers} workers`;
        this.options.log(`coordinator: ignored a Hello from ${body.value.workerId}: ${why}`);
        return;
      }
      Object.assign(member, { identity, hello: body.value });
    } else {
      const member = this.members.find((m) => m.identity?.equals(identity));
      if (!member || runId !== this.options.runId) {
        this.options.log(`coordinator: dropped a ${body.case} from an unknown peer or run`);
        return;
      }
      if (body.case === 'error') {
        this.fail(`${member.name} failed (${body.value.code}): ${body.value.message}`);
        return;
      }
      member.inbox.push(body);
    }
    this.signal();
  }

  /** The member a Hello belongs to: a spawned process by pid, or an external worker's new rank. */
  private memberFor(identity: Buffer, hello: Hello): Member | undefined {
    const { membership } = this.options;
    if (membership.kind === 'spawn') {
      return this.members.find((m) => m.process?.pid === hello.pid && !m.hello);
    }
    if (this.members.length >= membership.workers) return undefined;
    if (this.members.some((m) => m.identity?.equals(identity))) return undefined;
    const rank = this.members.length;
    const member: Member = { name: `worker rank ${rank} (${hello.workerId})`, inbox: [] };
    this.members.push(member);
    return member;
  }

  private beat(): void {
    if (this.closed) return;
    const body: ControlBody = {
      case: 'heartbeat',
      value: { sentAtMs: Date.now(), state: 'unspecified', rssBytes: 0, stepsDone: 0 },
    };
    for (const [rank, m] of this.members.entries()) {
      if (m.identity) this.send(rank, body).catch(() => undefined);
    }
  }
}
