// What a worker holds between control messages: its replica, its place in the
// ring (rank, generation, socket), the step-start snapshot, and one serialized
// send path for replies and heartbeats. The control handlers act on it.
import type { RingAllReduce } from '@lorafleet/collective';
import type { ControlBody, WorkerState } from '@lorafleet/protocol';
import type { CoordinatorLink, LinkCurve } from './coordinator-link.js';
import { HeartbeatThread } from './heartbeat.js';
import { type Mailbox, bindRing } from './mailbox.js';
import { ComputeProgress } from './progress.js';
import type { Replica } from './replica.js';
import { RING_DTYPE, type RunConfig } from './run-config.js';
import { StateAssembler } from './state-transfer.js';
import type { AllReduce, TrainState } from './step.js';

/** A ring position: from Welcome at the start, from Regroup afterwards. */
export interface RingPlace {
  rank: number;
  worldSize: number;
  ringEndpoints: string[];
  generation: number;
  ringPublicKeys: string[];
}

export interface SessionSetup {
  link: CoordinatorLink;
  mailbox: Mailbox;
  runId: string;
  /** Where this worker's ring socket listens (said in Hello). */
  dataEndpoint: string;
  /** The Hello's heartbeatId: the heartbeat thread's socket names its worker with it. */
  heartbeatId: string;
  config: RunConfig;
  curve: LinkCurve | undefined;
  log: (line: string) => void;
  rank: number;
  generation: number;
}

const WORKER_HEARTBEAT_MS = 1000;

export class WorkerSession {
  readonly link: CoordinatorLink;
  readonly mailbox: Mailbox;
  readonly config: RunConfig;
  readonly log: (line: string) => void;
  rank: number;
  generation: number;
  /** The step whose all-reduce runs now: it names the ring's chunks. */
  ringStep = 0;
  /** The replica at the start of the step in flight; restored on Abort. */
  snapshot: TrainState | undefined;
  /** Parts of a trainer state sent to this (joining) worker. */
  readonly assembler = new StateAssembler();
  private ring: RingAllReduce | undefined;
  private built: Replica | undefined;
  private sending: Promise<void> = Promise.resolve();
  /** Shared with the heartbeat thread, which reports it while compute blocks this thread. */
  private readonly progress = new ComputeProgress();
  private heartbeat: HeartbeatThread | undefined;
  private current: WorkerState = 'idle';

  constructor(private readonly setup: SessionSetup) {
    this.link = setup.link;
    this.mailbox = setup.mailbox;
    this.config = setup.config;
    this.log = setup.log;
    this.rank = setup.rank;
    this.generation = setup.generation;
  }

  get replica(): Replica {
    if (!this.built) throw new Error(`rank ${this.rank}: the replica is not built yet`);
    return this.built;
  }

  set replica(replica: Replica) {
    this.built = replica;
  }

  /** What this worker does, as its heartbeats tell the coordinator. */
  get state(): WorkerState {
    return this.current;
  }

  set state(state: WorkerState) {
    this.current = state;
    this.progress.state = state;
    if (this.built) this.progress.stepsDone = this.built.step.stepsDone;
  }

  /** One send at a time on the socket (replies; heartbeats leave from their own thread). */
  send(body: ControlBody): Promise<void> {
    const sent = this.sending.then(() => this.link.send(body));
    this.sending = sent.catch(() => undefined);
    return sent;
  }

  /**
   * The replica's all-reduce, in the run's wire dtype. Chunks carry the ring's
   * generation (in their header, and in their run id for older peers' logs):
   * frames of an aborted attempt or an older ring are dropped as foreign.
   */
  readonly allReduce: AllReduce = (buffer) => {
    if (!this.ring) {
      throw new Error(`rank ${this.rank}: no ring (the step was aborted or awaits a Regroup)`);
    }
    return this.ring.allReduce(buffer, {
      step: this.ringStep,
      runId: `${this.setup.runId}/g${this.generation}`,
      generation: this.generation,
      wireDtype: RING_DTYPE[this.config.wireDtype],
    });
  };

  /** Binds this worker's ring socket at `place` and connects to its neighbour. */
  async formRing(place: RingPlace): Promise<void> {
    this.dropRing();
    const { dataEndpoint, curve } = this.setup;
    const { rank, worldSize, ringEndpoints, ringPublicKeys } = place;
    if (ringEndpoints[rank] !== dataEndpoint) {
      throw new Error(
        `the ring lists ${ringEndpoints[rank]} for rank ${rank}, but this worker listens on ${dataEndpoint}`,
      );
    }
    if (curve && ringPublicKeys.length !== worldSize) {
      throw new Error(
        `the coordinator sent ${ringPublicKeys.length} ring public keys for ${worldSize} ranks: does it run with --curve-key?`,
      );
    }
    this.ring = await bindRing({
      rank,
      worldSize,
      listen: dataEndpoint,
      timeoutMs: this.config.ringTimeoutMs,
      ...(curve && { curve: { keyPair: curve.keyPair, publicKeys: ringPublicKeys } }),
    });
    this.ring.connect(ringEndpoints);
    this.rank = rank;
    this.generation = place.generation;
  }

  /** Closes the ring socket; unblocks an all-reduce waiting on a lost peer. */
  dropRing(): void {
    this.ring?.close();
    this.ring = undefined;
  }

  /**
   * The computation moves on: before each micro-batch with the longest it
   * may take (ms) and whether that is a first guess, after the last with 0.
   * The heartbeat thread reports it.
   */
  readonly onCompute = (computeLimitMs: number, warmingUp = false): void => {
    this.progress.bump(computeLimitMs, warmingUp);
  };

  /**
   * Starts the heartbeat thread (one heartbeat now, then one a second, also
   * while a step computes), or, when it runs, has it beat now. Called in state
   * 'loading' on Welcome, then again once the replica is built: its first
   * heartbeat in another state says "ready".
   */
  startHeartbeat(): void {
    if (this.heartbeat) return this.heartbeat.beatNow();
    const { link, runId, heartbeatId, curve } = this.setup;
    this.heartbeat = new HeartbeatThread(
      { endpoint: link.endpoint, runId, heartbeatId, intervalMs: WORKER_HEARTBEAT_MS, curve },
      this.progress,
      this.log,
    );
  }

  /** Stops the heartbeat thread, lets queued sends leave, and frees the ring and the replica. */
  async close(): Promise<void> {
    await this.heartbeat?.close();
    await this.sending;
    this.mailbox.close();
    this.dropRing();
    this.built?.dispose();
  }
}
