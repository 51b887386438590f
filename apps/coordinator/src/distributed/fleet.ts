// The coordinator's end of the control plane: a ROUTER and the workers behind
// it (spawned here on loopback, or external daemons that join a --listen
// endpoint), their messages sorted into one bounded inbox per worker, and
// their liveness. A worker is lost when its process exits, when it reports an
// internal error, or when it stays silent past the heartbeat timeout (a hung
// or stopped process, a cut network); a lost worker is killed if it is ours,
// and the coordinator's waits on it end at once with MembersLost, which the
// training loop turns into Abort + Regroup (recovery.ts). Lost local workers
// are respawned (up to maxRestarts); new external workers may join while the
// run has fewer than its --expect workers. Every wait is bounded.
import type { Router } from 'zeromq';
import type { CurveAuthenticator, CurveKeyPair } from '@lorafleet/collective';
import type { BackendName } from '@lorafleet/core';
import { type ControlBody, type Hello, decodeControl, encodeControl } from '@lorafleet/protocol';
import { DropLog } from './drop-log.js';
import { admit, senderOf } from './fleet-admission.js';
import { deliver } from './fleet-inbox.js';
import { coordinatorHeartbeat, openControlRouter } from './fleet-socket.js';
import { spawnMember } from './fleet-spawn.js';
import { FleetWaits } from './fleet-waits.js';
import { FleetError, type Member, MembersLost, Roster } from './roster.js';
import type { InProcessWorker } from './in-process.js';
import type { WorkerProcess } from './worker-process.js';

/** How long a worker's failed exit waits for the Error it sent before it (onExit). */
const EXIT_GRACE_MS = 300;
export { FleetError, type Member, type MemberStatus, MembersLost } from './roster.js';

/** Where the workers come from. */
export type Membership =
  /** One worker in this process (`lorafleet train` without --workers or --listen). */
  | { kind: 'inprocess'; workers: 1 }
  | { kind: 'spawn'; workers: number }
  /** External `lorafleet-worker --coordinator ENDPOINT` daemons; at most `workers` at a time. */
  | { kind: 'listen'; endpoint: string; workers: number };

export interface FleetOptions {
  membership: Membership;
  runId: string;
  backend: BackendName;
  /** How long the first workers may take to say Hello (or, with --listen, to join). */
  helloTimeoutMs: number;
  /** Silence after which a ready worker is lost. */
  heartbeatTimeoutMs: number;
  /**
   * A micro-batch whose progress stalls this long is hung (the worker is lost);
   * undefined: each worker's own limit, from its measured micro-batch times.
   */
  stepTimeoutMs?: number;
  /** Spawned workers: how many lost ones are replaced, in all. */
  maxRestarts: number;
  /** Spawned workers: the GPU of each slot (worker i and its replacements use gpus[i % length]). */
  gpus?: readonly number[];
  /** Lines about the fleet (worker output, dropped frames). */
  log: (line: string) => void;
  /** Joins, losses and restarts, for the event log. */
  onEvent?: (level: 'info' | 'warn' | 'error', message: string) => void;
  /** CURVE on the control plane: our key pair and the worker public keys we admit. */
  curve?: { keyPair: CurveKeyPair; authorizedKeys: readonly string[] };
}

type Case = ControlBody['case'];
type BodyOf<K extends Case> = Extract<ControlBody, { case: K }>['value'];

/** Coordinator heartbeats, so idle workers know it is alive. */
const HEARTBEAT_MS = 1000;
/** How often liveness is checked. */
const WATCH_MS = 250;
/** A liveness check this much later than due means the coordinator itself was paused. */
const PAUSE_MS = 1000;
/** How long the closed ROUTER keeps trying to deliver (Shutdown to external workers). */
const ROUTER_LINGER_MS = 1000;

export class WorkerFleet {
  private readonly roster = new Roster();
  private restarts = 0;
  private failure: FleetError | undefined;
  private readonly waits = new FleetWaits(() => this.failure);
  private stopping = false;
  private closed = false;
  /** Lost workers are replaced only once the first ones have all said Hello. */
  private started = false;
  private sending: Promise<void> = Promise.resolve();
  private readonly timers: NodeJS.Timeout[];
  private readonly drops: DropLog;
  /** The ring as last formed (setRing). */
  private ring: readonly Member[] = [];
  /** performance.now() of the last liveness check (a late one measures our own pause). */
  private lastWatch = performance.now();
  /** The fewest and the latest ring sizes (the summary reports the truth). */
  readonly ringSizes = { min: Infinity, last: 0 };
  /** Workers declared lost, in the ring or still joining it (summary.json's workersLost). */
  lostWorkers = 0;

  private constructor(
    private readonly router: Router,
    readonly endpoint: string,
    private readonly options: FleetOptions,
    private readonly auth: CurveAuthenticator | undefined,
  ) {
    this.drops = new DropLog(options.log);
    this.timers = [
      setInterval(() => this.beat(), HEARTBEAT_MS),
      setInterval(() => this.watch(), WATCH_MS),
    ];
    for (const t of this.timers) t.unref();
    // Workers run in their own process groups: take them down if we die first.
    process.on('exit', this.killOnExit);
  }

  private readonly killOnExit = () => {
    for (const m of this.roster.all) m.process?.kill();
  };

  /** Binds the ROUTER, spawns the workers (or waits for them to join) and waits for every Hello. */
  static async start(options: FleetOptions): Promise<WorkerFleet> {
    const { membership } = options;
    const { router, auth } = await openControlRouter(options, ROUTER_LINGER_MS);
    const fleet = new WorkerFleet(router, router.lastEndpoint!, options, auth);
    void fleet.read();
    try {
      if (membership.kind !== 'listen') {
        for (let slot = 0; slot < membership.workers; slot++) fleet.spawn(slot);
        await fleet.waits.until(
          () => fleet.roster.all.every((m) => m.status !== 'starting'),
          options.helloTimeoutMs,
          () =>
            `Hello from ${fleet.describe(fleet.roster.all.filter((m) => m.status === 'starting'))}`,
        );
        const lost = fleet.roster.all.filter((m) => m.status === 'lost');
        if (lost.length > 0) throw new FleetError(new MembersLost(lost).message);
      } else {
        await fleet.awaitJoins(membership.workers, options.helloTimeoutMs);
      }
      fleet.started = true;
      return fleet;
    } catch (error) {
      await fleet.sending; // replies (a refusal, a noted backend report) leave before the socket closes
      fleet.close();
      throw error;
    }
  }

  /** Members in the ring, by rank. */
  active(): Member[] {
    return this.roster.active();
  }

  /** Members that said Hello and wait for Welcome. */
  newcomers(): Member[] {
    return this.roster.newcomers();
  }

  /** Members with a loaded replica, waiting to enter the ring. */
  ready(): Member[] {
    return this.roster.ready();
  }

  /** Members that are or may become part of the ring. */
  live(): Member[] {
    return this.roster.live();
  }

  /** Welcome/Regroup's ringPublicKeys, in rank order: the members' Hello keys with CURVE, else none. */
  ringPublicKeys(members: readonly Member[]): string[] {
    return this.options.curve ? members.map((m) => m.hello!.curvePublicKey) : [];
  }

  /** Every member ever seen, in order of arrival. */
  members(): readonly Member[] {
    return this.roster.all;
  }

  /** Marks a welcomed member as loading its replica (its first heartbeat then makes it ready). */
  welcomed(m: Member): void {
    this.roster.welcomed(m);
  }

  /**
   * The active member of a rank now. A request and its reply go to the member
   * resolved once: a rank names another member after a loss (a failed send
   * marks its member lost at once), and its reply would never come.
   */
  memberOf(rank: number): Member {
    return this.resolve(rank);
  }

  /** A member, or the active member of a rank. */
  private resolve(target: Member | number): Member {
    if (typeof target !== 'number') return target;
    const m = this.active()[target];
    if (!m) throw new FleetError(`no worker holds rank ${target}`);
    return m;
  }

  /** Sends one message (to a member, or to the member of a rank); sends are queued, as a ZeroMQ socket takes one at a time. */
  send(target: Member | number, body: ControlBody): Promise<void> {
    const member = this.resolve(target);
    const frame = encodeControl({ runId: this.options.runId, body });
    const sent = this.sending.then(async () => {
      if (member.status === 'lost') return; // its replacement gets the news instead
      try {
        await this.router.send([member.identity!, frame]);
      } catch (error) {
        // While stopping, a worker that already left cannot be reached: that is no loss.
        if (!this.stopping) {
          this.markLost(member, `cannot send ${body.case}: ${(error as Error).message}`);
        }
      }
    });
    this.sending = sent.catch(() => undefined);
    return sent;
  }

  async broadcast(body: ControlBody, members = this.active()): Promise<void> {
    for (const m of members) await this.send(m, body);
  }

  /**
   * The next message of kind `kind` from each of `members`, in their order.
   * Heartbeats and messages of the `discard` kinds ahead of it are dropped
   * (stale replies of an aborted step); any other message is a protocol
   * error. Throws MembersLost as soon as one of them is lost.
   */
  async collect<K extends Case>(
    kind: K,
    timeoutMs: number,
    targets: readonly (Member | number)[],
    discard: readonly Case[] = [],
  ): Promise<BodyOf<K>[]> {
    const members = targets.map((t) => this.resolve(t));
    await this.waits.until(
      () => {
        const lost = members.filter((m) => m.status === 'lost');
        if (lost.length > 0) throw new MembersLost(lost);
        return members.every((m) => this.peek(m, kind, discard));
      },
      timeoutMs,
      () => `${kind} from ${this.describe(members.filter((m) => !this.peek(m, kind, discard)))}`,
    );
    return members.map((m) => m.inbox.shift()!.value as BodyOf<K>);
  }

  /** Waits until `ready()` holds, the fleet fails, or `timeoutMs` passes (then false). */
  waitFor(ready: () => boolean, timeoutMs: number): Promise<boolean> {
    return this.waits.waitFor(ready, timeoutMs);
  }

  /**
   * Declares a member lost: it leaves the ring; ours is killed and, budget
   * permitting, replaced, unless `replaceable` is false (its slot's backend
   * cannot start: a replacement would fail alike).
   */
  markLost(m: Member, reason: string, replaceable = true): void {
    if (m.status === 'lost' || m.status === 'left' || this.closed) return;
    const wasInRing = m.status === 'active';
    m.status = 'lost';
    this.lostWorkers++;
    m.lostReason = reason;
    m.rank = -1;
    m.inbox = [];
    m.process?.kill('SIGKILL');
    this.event('warn', `${m.name} lost: ${reason}`);
    // After a failure (a data or storage error) the run stops: nothing to replace.
    if (
      this.options.membership.kind === 'spawn' &&
      this.started &&
      !this.stopping &&
      !this.failure &&
      replaceable
    ) {
      if (this.restarts < this.options.maxRestarts) {
        this.restarts++;
        const replacement = this.spawn(m.slot);
        this.event(
          'info',
          `respawned as ${replacement.name} (restart ${this.restarts} of ${this.options.maxRestarts})`,
        );
      } else if (wasInRing) {
        this.event('warn', `no restarts left (--max-restarts ${this.options.maxRestarts})`);
      }
    }
    this.waits.signal();
  }

  /** Makes `members` the ring, in this order (ranks 0..n-1); everyone else leaves it. */
  setRing(members: readonly Member[]): void {
    this.ring = [...members];
    this.roster.setRing(members);
    this.ringSizes.min = Math.min(this.ringSizes.min, members.length);
    this.ringSizes.last = members.length;
  }

  /**
   * Members of the ring as last formed that were lost since: a loss while the
   * coordinator waited on others only (rank 0 writing a checkpoint, between
   * steps) leaves the survivors' ring waiting for the lost one.
   */
  lostFromRing(): Member[] {
    return this.ring.filter((m) => m.status === 'lost');
  }

  /** The ring's size: --workers N or --expect N; extra arrivals wait as standbys. */
  get capacity(): number {
    return this.options.membership.workers;
  }

  /**
   * Sends Shutdown and waits for every spawned worker to exit 0; kills the
   * ones that do not. External workers exit on their own (the socket lingers
   * until Shutdown has left).
   */
  async stop(reason: string, timeoutMs: number): Promise<void> {
    this.stopping = true;
    const live = this.live().filter((m) => m.identity);
    for (const m of live) await this.send(m, { case: 'shutdown', value: { reason } });
    const spawned = live.flatMap((m) => (m.process ? [m.process] : []));
    const inProcess = live.flatMap((m) => (m.inProcess ? [m.inProcess] : []));
    const deadline = performance.now() + timeoutMs;
    while (
      (spawned.some((p) => !p.exit) || inProcess.some((w) => !w.finished)) &&
      performance.now() < deadline
    ) {
      await this.waits.changed(deadline - performance.now());
    }
    const failed = inProcess.find((w) => w.failure);
    if (failed) throw new FleetError(`after Shutdown: ${failed.describeEnd()}`);
    for (const m of live) m.status = 'left';
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
    this.drops.flush(true);
    for (const t of this.timers) clearInterval(t);
    process.off('exit', this.killOnExit);
    this.killOnExit();
    this.router.close();
    this.auth?.close();
    this.waits.signal();
  }

  private event(level: 'info' | 'warn' | 'error', message: string): void {
    this.options.log(`coordinator: ${message}`);
    this.options.onEvent?.(level, message);
  }

  private describe(members: readonly Member[]): string {
    return members.map((m) => m.name + (m.process?.lastWords() ?? '')).join(', ');
  }

  private spawn(slot: number): Member {
    return spawnMember(this.roster, slot, this.endpoint, this.options, {
      onInProcessEnd: (w) => this.onInProcessEnd(w),
      onExit: (p) => this.onExit(p),
    });
  }

  /** Waits for `workers` external Hellos, printing "waiting for workers: k/N" as they come. */
  private async awaitJoins(workers: number, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    let shown = -1;
    for (;;) {
      if (this.failure) throw this.failure;
      const joined = this.live().length;
      if (joined !== shown) {
        this.options.log(`waiting for workers: ${joined}/${workers} (on ${this.endpoint})`);
        shown = joined;
      }
      if (joined >= workers) return;
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new FleetError(
          `timed out after ${(timeoutMs / 1000).toFixed(0)} s waiting for workers: ${joined}/${workers} ` +
            `joined ${this.endpoint}; start the rest with \`lorafleet-worker --coordinator ${this.endpoint}\` ` +
            '(or raise --join-timeout)',
        );
      }
      await this.waits.changed(left);
    }
  }

  private onInProcessEnd(w: InProcessWorker): void {
    const m = this.roster.all.find((x) => x.inProcess === w);
    if (m && (w.failure || !this.stopping)) this.markLost(m, w.describeEnd());
    this.waits.signal();
  }

  /**
   * A worker that fails sends its Error (a data error: no restart fixes it)
   * before it exits, but the process's end can reach this event loop before
   * the control socket's read of that Error does: a failed exit is acted on
   * after EXIT_GRACE_MS, so the Error decides (seen in CI: a data error taken
   * for a crash, and the worker respawned).
   */
  private onExit(p: WorkerProcess): void {
    if (p.exit?.code === 0 || this.stopping) return this.exited(p);
    setTimeout(() => this.exited(p), EXIT_GRACE_MS);
  }

  private exited(p: WorkerProcess): void {
    const m = this.roster.all.find((x) => x.process === p);
    if (m && !(this.stopping && p.exit?.code === 0)) {
      this.markLost(m, p.lossReason(), !p.backendUnavailable);
    }
    this.waits.signal();
  }

  private fail(message: string): void {
    if (!this.stopping) this.failure ??= new FleetError(message);
    this.waits.signal();
  }

  /** Whether `kind` waits first in the inbox, after heartbeats and `discard` kinds (dropped). */
  private peek(m: Member, kind: Case, discard: readonly Case[]): boolean {
    while (m.inbox[0] && (m.inbox[0].case === 'heartbeat' || discard.includes(m.inbox[0].case))) {
      if (m.inbox[0].case === kind) break;
      m.inbox.shift();
    }
    const first = m.inbox[0];
    if (first && first.case !== kind) {
      this.fail(`${m.name} sent ${first.case} where ${kind} was expected`);
    }
    return first !== undefined && first.case === kind;
  }

  private async read(): Promise<void> {
    try {
      for await (const [identity, frame, ...rest] of this.router) {
        if (identity && frame && rest.length === 0) this.route(identity, frame);
        else this.drops.note(`coordinator: dropped a ${1 + rest.length}-part message`);
      }
    } catch (error) {
      if (!this.closed) this.fail(`the control socket failed: ${(error as Error).message}`);
    }
  }

  private route(identity: Buffer, frame: Buffer): void {
    const decoded = decodeControl(frame);
    if (!decoded.ok) {
      this.drops.note(`coordinator: dropped a bad frame: ${decoded.error.message}`);
      return;
    }
    const { runId, body } = decoded.message;
    if (body.case === 'hello') {
      this.admit(identity, body.value, runId);
      return;
    }
    const heartbeatId = body.case === 'heartbeat' ? body.value.heartbeatId : undefined;
    const member = senderOf(this.roster, identity, heartbeatId);
    if (!member && body.case === 'error' && body.value.code === 'backend') {
      return this.backendReport(identity, body.value.message);
    }
    if (!member || runId !== this.options.runId || member.status === 'lost') {
      // A lost worker that wakes up (SIGCONT) or a stranger: not ours any more.
      return;
    }
    const delivery = deliver(member, body);
    if (delivery.kind === 'lost') return this.markLost(member, delivery.reason);
    if (delivery.kind === 'fail') return this.fail(delivery.message);
    if (delivery.kind === 'ready') this.event('info', `${member.name} is ready`);
    this.waits.signal();
  }

  /** A Hello: admitted (a spawned process by pid, or an external worker), refused, or a repeat. */
  private admit(identity: Buffer, hello: Hello, runId: string): void {
    const { membership, runId: ours } = this.options;
    const context = { roster: this.roster, membership, runId: ours, auth: this.auth };
    const verdict = admit({ ...context, stopping: this.stopping }, identity, hello, runId);
    if (verdict.kind === 'known') return;
    if (verdict.kind === 'refuse') return this.refuse(identity, hello, verdict.reason);
    const { name } = verdict.member;
    this.event('info', `${name} said Hello from ${hello.host} (${hello.backend}, ${hello.device})`);
    this.waits.signal();
  }

  /**
   * A launched worker whose backend cannot start, in place of its Hello: the
   * engine would start it the same way again, so while the first workers are
   * awaited the run cannot form, and fails now with its reason; later (an
   * engine's restart of a lost task) it is noted. Answered, so it can exit.
   */
  private backendReport(identity: Buffer, message: string): void {
    this.reply(identity, { case: 'error', value: { code: 'backend', message: 'noted' } });
    if (this.started) return this.event('warn', `a worker cannot compute: ${message}`);
    this.fail(`a worker cannot compute, so the run cannot form: ${message}`);
  }

  /** Answers a Hello we do not take with the reason, so the worker exits at once and says why. */
  private refuse(identity: Buffer, hello: Hello, reason: string): void {
    this.event('warn', `refused ${hello.workerId}: ${reason}`);
    this.reply(identity, {
      case: 'error',
      value: { code: 'unspecified', message: `refused: ${reason}` },
    });
  }

  /** Sends `body` to a peer that is not a member (it has no inbox of ours); close() lets it leave. */
  private reply(identity: Buffer, body: ControlBody): void {
    const frame = encodeControl({ runId: this.options.runId, body });
    // zeromq.js throws at once (EBADF), not by rejecting, on a socket closed while the run
    // finishes: the async callback turns that into a rejection the catch drops, as a lost
    // reply to a peer we turn away is no loss (it used to be unhandled and end the process).
    this.sending = this.sending
      .then(async () => {
        await this.router.send([identity, frame]);
      })
      .catch(() => undefined);
  }

  /** Liveness: silent ready workers and stuck builders are lost. */
  private watch(): void {
    // After Shutdown the workers go quiet on purpose; stop() bounds the wait.
    if (this.stopping) return;
    const now = performance.now();
    const pausedMs = now - this.lastWatch - WATCH_MS;
    this.lastWatch = now;
    if (pausedMs > PAUSE_MS) {
      // Judge on the next check, once the messages that waited in the socket are read.
      this.roster.excuse(pausedMs, now);
      // A worker in this process computes on this thread: its long steps are no news.
      const sharesThread = this.roster.all.some((m) => m.inProcess);
      if (pausedMs > this.options.heartbeatTimeoutMs / 2 && !sharesThread) {
        this.event(
          'warn',
          `the coordinator did not run for ${(pausedMs / 1000).toFixed(1)} s (stopped, or the machine is overloaded); the workers' silence in that time does not count`,
        );
      }
      return;
    }
    this.drops.flush();
    const strangers = this.options.membership.kind === 'listen';
    const { heartbeatTimeoutMs, stepTimeoutMs } = this.options;
    const limits = { heartbeatTimeoutMs, stepTimeoutMs };
    for (const { member, reason } of this.roster.overdue(limits, strangers)) {
      this.markLost(member, reason);
    }
  }

  private beat(): void {
    // After Shutdown, workers leave: a heartbeat to one that is gone would look like a loss.
    if (this.closed || this.stopping) return;
    const body = coordinatorHeartbeat();
    for (const m of this.live()) if (m.identity) this.send(m, body).catch(() => undefined);
  }
}
