// Elastic membership of a distributed run (DESIGN.md, "Faults"): new workers
// are welcomed as joiners and build their replicas while training goes on;
// at a step boundary they receive the current adapter + optimizer state from
// a ring member (StateRequest -> TrainerState parts, forwarded verbatim) and
// the ring re-forms with them (Regroup -> Regrouped, replica hashes checked).
// When workers are lost mid-step, the step is aborted on the survivors (they
// restore their step-start snapshot), the ring re-forms without the lost
// ones, and the caller replays the same step: its samples were never
// committed, so none is lost or seen twice.
import {
  type ControlBody,
  REPLIES,
  type Regrouped,
  type TrainerState,
  type Welcome,
} from '@lorafleet/protocol';
import { hashHex } from '@lorafleet/worker';
import { FleetError, type Member, MembersLost, type WorkerFleet } from './fleet.js';

export interface RingOptions {
  /** What a joining worker is welcomed with (a run config without resumeFrom). */
  joinerWelcome: Pick<Welcome, 'runConfig' | 'runConfigHash'>;
  /** Below this many ring members, wait for joiners instead of training on. */
  minWorkers: number;
  /** How long to wait for joiners when below minWorkers. */
  joinTimeoutMs: number;
  /** Bound on one regroup or state transfer. */
  exchangeTimeoutMs: number;
  /** Ring changes, for the log and the event log. */
  onEvent: (level: 'info' | 'warn' | 'error', message: string) => void;
}

/**
 * Replies a worker may still have in flight from an aborted step or exchange:
 * every reply of the protocol's request/reply pairs.
 */
export const STALE: readonly ControlBody['case'][] = REPLIES;

export class ElasticRing {
  /** Increases each time the ring re-forms; chunks of older rings are dropped by the workers. */
  generation = 0;
  /** Ring changes so far: joins admitted, and how long each recovery took (the fleet counts losses). */
  readonly stats = { joins: 0, recoverySeconds: [] as number[] };
  /** The newest checkpoint of the run (written, or resumed from): where a rerun continues if every worker is lost. */
  lastCheckpoint: string | null = null;

  constructor(
    private readonly fleet: WorkerFleet,
    private readonly options: RingOptions,
  ) {}

  /** Welcomes workers that said Hello mid-run as joiners: they load their replicas in the background. */
  async welcomeNewcomers(): Promise<void> {
    for (const m of this.fleet.newcomers()) {
      await this.fleet.send(m, {
        case: 'welcome',
        value: {
          rank: 0,
          worldSize: 1,
          ringEndpoints: [m.hello!.dataEndpoint],
          ...this.options.joinerWelcome,
          generation: this.generation,
          ringPublicKeys: this.fleet.ringPublicKeys([m]),
          joining: true,
        },
      });
      this.fleet.welcomed(m);
      this.options.onEvent('info', `${m.name} welcomed as a joiner; it loads its replica`);
    }
  }

  /**
   * At a step boundary (`done` steps committed): welcome newcomers, wait while
   * the ring is below minWorkers, and bring ready joiners in.
   */
  async boundary(done: number): Promise<void> {
    // Lost while nobody waited on them: the survivors' ring still counts them.
    const lost = this.fleet.lostFromRing();
    if (lost.length > 0) throw new MembersLost(lost);
    await this.welcomeNewcomers();
    await this.awaitQuorum(done);
    if (this.fleet.ready().length > 0) await this.admit(done);
  }

  /**
   * After MembersLost while step `step` was in flight (or at a boundary):
   * abort it on the survivors and re-form the ring, admitting ready joiners;
   * repeats while more workers are lost on the way.
   */
  async recover(lost: MembersLost, step: number, done: number): Promise<void> {
    const started = performance.now();
    let reason = lost.message;
    for (;;) {
      const survivors = this.fleet.active();
      if (survivors.length === 0) {
        throw new FleetError(
          `every worker of the ring was lost at step ${step} (${reason}); their state is gone: ` +
            (this.lastCheckpoint
              ? `continue from the last checkpoint with --resume ${this.lastCheckpoint}`
              : 'no checkpoint was written yet, so nothing can be resumed: fix the cause and start again'),
        );
      }
      try {
        this.options.onEvent(
          'warn',
          `step ${step} aborted: ${reason}; re-forming the ring from ${survivors.length} survivor(s)`,
        );
        await this.fleet.broadcast({ case: 'abort', value: { step, reason } }, survivors);
        // A survivor that could not be told is lost too: count again before waiting on anyone.
        const unreachable = survivors.filter((m) => m.status === 'lost');
        if (unreachable.length > 0) throw new MembersLost(unreachable);
        await this.welcomeNewcomers();
        await this.awaitQuorum(done);
        await this.admit(done, true);
        const seconds = (performance.now() - started) / 1000;
        this.stats.recoverySeconds.push(seconds);
        this.options.onEvent(
          'info',
          `recovered in ${seconds.toFixed(3)} s: step ${step} is replayed on ${this.fleet.active().length} worker(s)`,
        );
        return;
      } catch (error) {
        if (!(error instanceof MembersLost)) throw error;
        reason = error.message;
      }
    }
  }

  /** Waits (welcoming newcomers) until the ring plus ready joiners reach minWorkers. */
  private async awaitQuorum(done: number): Promise<void> {
    const { minWorkers, joinTimeoutMs } = this.options;
    const count = () => this.fleet.active().length + this.fleet.ready().length;
    if (count() >= minWorkers) return;
    this.options.onEvent(
      'warn',
      `${count()} worker(s) at step ${done}, below --min-workers ${minWorkers}: waiting up to ` +
        `${(joinTimeoutMs / 1000).toFixed(0)} s for more to join`,
    );
    const deadline = performance.now() + joinTimeoutMs;
    while (count() < minWorkers) {
      const left = deadline - performance.now();
      const ringGone = () => this.fleet.active().length === 0;
      const changed = await this.fleet.waitFor(
        () => this.fleet.newcomers().length > 0 || count() >= minWorkers || ringGone(),
        Math.max(0, left),
      );
      // With no one left in the ring, no joiner can get the trained state: stop waiting.
      if (ringGone()) throw new MembersLost(this.fleet.lostFromRing());
      if (!changed) {
        throw new FleetError(
          `only ${count()} worker(s) after waiting ${(joinTimeoutMs / 1000).toFixed(0)} s at step ${done}; ` +
            `--min-workers is ${minWorkers} (start more workers, or lower --min-workers)`,
        );
      }
      await this.welcomeNewcomers();
    }
  }

  /**
   * Gives ready joiners the current trainer state and re-forms the ring with
   * them; with `always`, re-forms it even when nobody joins (after a loss).
   */
  private async admit(done: number, always = false): Promise<void> {
    const ring = this.fleet.active();
    // Beyond the ring's size, ready workers wait as standbys for a loss.
    const joiners = this.fleet.ready().slice(0, Math.max(0, this.fleet.capacity - ring.length));
    if (joiners.length === 0 && !always) return;
    if (joiners.length > 0) {
      const source = ring[0];
      if (!source) {
        // The last ring member was lost while the joiners loaded: the trainer state is gone.
        throw new FleetError(
          `every worker of the ring was lost by step ${done}, before the joiners received its state; ` +
            'continue from the last checkpoint with --resume OUT',
        );
      }
      const { exchangeTimeoutMs } = this.options;
      await this.fleet.send(source, { case: 'stateRequest', value: { step: done } });
      const parts: TrainerState[] = [];
      do {
        const [part] = await this.fleet.collect('trainerState', exchangeTimeoutMs, [source], STALE);
        parts.push(part!);
      } while (parts.length < parts[0]!.parts);
      for (const j of joiners) {
        for (const part of parts) await this.fleet.send(j, { case: 'trainerState', value: part });
      }
      this.stats.joins += joiners.length;
    }
    await this.regroup([...ring, ...joiners], done);
    for (const j of joiners) {
      this.options.onEvent('info', `${j.name} joined the ring at step ${done} as rank ${j.rank}`);
    }
  }

  /** Makes `members` the ring (ranks in this order) and checks they hold the same replica. */
  private async regroup(members: Member[], done: number): Promise<void> {
    const generation = ++this.generation;
    this.fleet.setRing(members);
    const ringEndpoints = members.map((m) => m.hello!.dataEndpoint);
    for (const [rank, m] of members.entries()) {
      await this.fleet.send(m, {
        case: 'regroup',
        value: {
          generation,
          rank,
          worldSize: members.length,
          ringEndpoints,
          ringPublicKeys: this.fleet.ringPublicKeys(members),
          step: done,
        },
      });
    }
    const replies = await this.collectRegrouped(members, generation);
    const hashes = new Map<string, string[]>();
    replies.forEach((r, rank) => {
      if (r.generation !== generation || r.step !== done) {
        throw new FleetError(
          `${members[rank]!.name} answered Regroup ${generation} at step ${done} with generation ${r.generation}, step ${r.step}`,
        );
      }
      const hex = hashHex(r.replicaHash);
      hashes.set(hex, [...(hashes.get(hex) ?? []), members[rank]!.name]);
    });
    if (hashes.size > 1) {
      throw new FleetError(
        `after re-forming the ring at step ${done}, the replicas differ: ` +
          [...hashes].map(([hex, names]) => `${names.join(', ')}: ${hex}`).join('; '),
      );
    }
    this.options.onEvent(
      'info',
      `ring generation ${generation}: ${members.length} worker(s) at step ${done}`,
    );
  }

  /**
   * Each member's Regrouped for `generation`. A survivor of an interrupted
   * regroup answers the older Regroup too (before it reads the Abort), and
   * that reply may arrive before or after the loss was seen: an older
   * generation is stale, discarded like the other late replies.
   */
  private async collectRegrouped(members: Member[], generation: number): Promise<Regrouped[]> {
    const deadline = performance.now() + this.options.exchangeTimeoutMs;
    const replies = await this.fleet.collect(
      'regrouped',
      this.options.exchangeTimeoutMs,
      members,
      STALE,
    );
    for (const [rank, m] of members.entries()) {
      while (replies[rank]!.generation < generation) {
        const left = Math.max(0, deadline - performance.now());
        replies[rank] = (await this.fleet.collect('regrouped', left, [m], STALE))[0]!;
      }
    }
    return replies;
  }
}

/** Runs `action`; when workers are lost meanwhile, re-forms the ring and runs it again. */
export async function withRecovery(ring: ElasticRing, done: number, action: () => Promise<void>) {
  for (;;) {
    try {
      return await action();
    } catch (error) {
      if (!(error instanceof MembersLost)) throw error;
      await ring.recover(error, done + 1, done);
    }
  }
}
