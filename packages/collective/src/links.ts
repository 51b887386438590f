// The two ends of a rank's place in the ring: an Outbox (PUSH, connected to the
// right neighbour) and an Inbox (PULL, bound, fed by the left neighbour).
//
// Why PUSH/PULL: data flows one way around the ring, so each link needs exactly
// one direction; PUSH blocks (rather than drops) at its high-water mark, which
// gives back-pressure without an application-level ack, and queues frames until
// the neighbour has bound, so ranks can start in any order. PAIR is meant for
// inproc and does not reconnect; DEALER/ROUTER would add identity frames we do
// not need. A PULL socket accepts any connecting peer, which is why every frame
// is tagged and checked.
import type { Pull, Push } from 'zeromq';
import {
  BYTES_PER_ELEMENT,
  decodeChunk,
  type Chunk,
  type Phase,
  type WireDtype,
  type WireLimits,
} from '@lorafleet/protocol';

export interface Peer {
  rank: number;
  endpoint: string;
}

/** An all-reduce failure; `peer` is the neighbour that did not deliver or receive, when known. */
export class RingError extends Error {
  constructor(
    message: string,
    readonly peer?: Peer,
  ) {
    super(message);
    this.name = 'RingError';
  }
}

function isTimeout(error: unknown): boolean {
  return (error as { code?: string } | null)?.code === 'EAGAIN';
}

/** The sending end of a link, whatever carries it. */
export interface ChunkSender {
  /** Sends one chunk ([header, payload]); resolves once it is queued, waiting while the queue is full. */
  send(frames: Buffer[], what: string): Promise<void>;
  /** Chunks sent so far on this link, over every call: what written() counts. */
  readonly sent: number;
  /**
   * Resolves once the first `count` chunks this sender ever sent have left this process's
   * memory queue: their payloads may be overwritten then (unless `holdsPayloads`).
   */
  written(count: number, what: string): Promise<void>;
  /**
   * Whether a sent payload may still be read after written() (ZeroMQ keeps a reference until its
   * I/O thread has written it): if so, payloads that the caller may overwrite leave as copies.
   */
  readonly holdsPayloads: boolean;
}

/** The receiving end of a link, whatever carries it. */
export interface ChunkReceiver {
  /** The next piece of the exchange `expect` names; others are dropped with a log line. */
  receive(expect: Expected): Promise<Chunk>;
  /** Hands a received payload's memory back once nothing reads it any more. */
  release(payload: Uint8Array): void;
}

export class Outbox implements ChunkSender {
  readonly holdsPayloads = true;
  sent = 0;

  constructor(
    private readonly socket: Push,
    private readonly rank: number,
    private readonly peer: Peer,
    private readonly timeoutMs: number,
  ) {}

  /** libzmq's queue is its own: nothing to wait for here (it may read a payload later: `holdsPayloads`). */
  written(): Promise<void> {
    return Promise.resolve();
  }

  /** Sends one message (a chunk's [header, payload]); resolves once libzmq has queued it. */
  async send(frames: Buffer[], what: string): Promise<void> {
    try {
      await this.socket.send(frames);
      this.sent++;
    } catch (error) {
      const { rank, endpoint } = this.peer;
      if (isTimeout(error)) {
        throw new RingError(
          `rank ${this.rank}: timed out after ${this.timeoutMs} ms sending ${what} to rank ${rank} ` +
            `(${endpoint}): it is not receiving (dead, stalled, or never bound that endpoint)`,
          this.peer,
        );
      }
      throw new RingError(
        `rank ${this.rank}: sending ${what} to rank ${rank} (${endpoint}) failed: ${String(error)}`,
        this.peer,
      );
    }
  }
}

/** The frame a rank waits for next; anything else from the wire is either stale/foreign or a bug. */
export interface Expected {
  runId: string;
  generation: number;
  step: number;
  phase: Phase;
  index: number;
  segment: number;
  offset: number;
  dtype: WireDtype;
  /** Elements in the frame. */
  length: number;
}

export class Inbox implements ChunkReceiver {
  constructor(
    private readonly socket: Pull,
    private readonly rank: number,
    private readonly peer: Peer,
    private readonly timeoutMs: number,
    private readonly limits: Partial<WireLimits>,
    private readonly requireChecksum: boolean,
    private readonly log: (line: string) => void,
  ) {}

  /**
   * The next piece of the exchange `expect` names, from the left neighbour. Anything else is
   * dropped with a log line: stale or foreign pieces (another run, generation, step, phase,
   * index or sender), undecodable ones, and ones whose layout disagrees with ours. The wait is bounded
   * by timeoutMs in total; its error repeats the last drop, which is often the real cause.
   */
  async receive(expect: Expected): Promise<Chunk> {
    const deadline = performance.now() + this.timeoutMs;
    let lastDrop = '';
    for (;;) {
      this.socket.receiveTimeout = Math.max(1, Math.ceil(deadline - performance.now()));
      let parts: Buffer[];
      try {
        parts = await this.socket.receive();
      } catch (error) {
        if (!isTimeout(error)) throw error;
        // zeromq.js can wake a receive that then finds nothing (seen with CURVE and
        // two-frame messages): EAGAIN well before the deadline is not the timeout.
        if (performance.now() < deadline - 1) continue;
        const { rank, endpoint } = this.peer;
        throw new RingError(
          `rank ${this.rank}: timed out after ${this.timeoutMs} ms waiting for ${describe(expect)} ` +
            `from rank ${rank} (${endpoint}): it is dead, stalled, or not part of this all-reduce` +
            (lastDrop ? `; last frame dropped meanwhile: ${lastDrop}` : ''),
          this.peer,
        );
      }
      const reason = checkArrival(parts, expect, this.peer.rank, this.limits, this.requireChecksum);
      if (typeof reason !== 'string') return reason;
      lastDrop = reason;
      this.log(`rank ${this.rank}: dropped ${reason}; waiting for ${describe(expect)}`);
    }
  }

  /** ZeroMQ owns the received message's memory: nothing to hand back. */
  release(): void {}
}

/** The chunk if it is exactly the frame expected from `peerRank`, else why not. */
export function checkArrival(
  parts: Buffer[],
  expect: Expected,
  peerRank: number,
  limits: Partial<WireLimits>,
  requireChecksum: boolean,
): Chunk | string {
  const decoded = decodeChunk(parts, limits, {
    requirePayloadChecksum: requireChecksum,
  });
  if (!decoded.ok) return `an undecodable frame (${decoded.error.message})`;
  const chunk = decoded.message;
  const from = `${describe(chunk)} from rank ${chunk.senderRank}`;
  const ours =
    chunk.runId === expect.runId &&
    chunk.generation === expect.generation &&
    chunk.step === expect.step &&
    chunk.phase === expect.phase &&
    chunk.index === expect.index &&
    chunk.senderRank === peerRank;
  if (!ours) return from;
  // The right exchange from the right peer, but the wrong shape: the ranks disagree on the call.
  if (chunk.dtype !== expect.dtype) {
    return `${from} in ${chunk.dtype} where this rank expects ${expect.dtype} (every rank must pass the same wireDtype)`;
  }
  const elements = chunk.payload.length / BYTES_PER_ELEMENT[chunk.dtype];
  if (
    chunk.segment !== expect.segment ||
    chunk.offset !== expect.offset ||
    elements !== expect.length
  ) {
    return (
      `${from} for segment ${chunk.segment} offset ${chunk.offset} (${elements} elements) where this rank ` +
      `expects segment ${expect.segment} offset ${expect.offset} (${expect.length}): ` +
      'do the ranks pass buffers of the same length and the same frameBytes?'
    );
  }
  return chunk;
}

export function describe(
  c: Pick<Chunk, 'runId' | 'generation' | 'step' | 'phase' | 'index'>,
): string {
  const ring = c.generation === 0 ? '' : ` generation ${c.generation}`;
  return `run ${JSON.stringify(c.runId)}${ring} step ${c.step} ${c.phase} #${c.index}`;
}
