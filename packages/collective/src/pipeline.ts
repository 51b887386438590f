// One all-reduce call as a pipeline of pieces. The ring's 2(n - 1) steps form
// a chain: the segment a rank receives in step g is the one it sends in step
// g + 1 (schedule.ts). So a piece moves on as soon as it has arrived and been
// reduced, rather than when the whole segment has: the sender walks the
// steps' pieces in order and waits only for the receiver to have processed the
// matching piece of the step before, while the transport (the kernel's socket
// buffers, or libzmq's I/O thread) brings in the next pieces as this thread adds.
//
// No copies on the way out, with one exception: a reduce-scatter piece is sent
// as a view of the caller's buffer, an all-gather piece after the first step
// as the very bytes that arrived. Both stay untouched until they have left:
// every rank's contribution to a segment reaches the segment's owner, whose
// sum comes back here before this rank overwrites it. The owned segment's
// pieces (all-gather step 0, f32) are the exception: nothing comes back after
// them, and the caller may write its buffer as soon as the call returns. The
// call therefore ends with the sender's written(all sent) (tcp: node has handed every
// byte to the kernel), and where a sender may still read payloads after that
// (ZeroMQ: `holdsPayloads`), the owned pieces leave as a copy (1/n of the buffer).
// Received payloads go back to the receiver (release) once added or passed on.
import {
  decodeFloats,
  encodeChunk,
  encodeFloats,
  roundToWire,
  type Phase,
  type WireLimits,
} from '@lorafleet/protocol';
import type { ChunkReceiver, ChunkSender } from './links.js';
import type { AllReduceOptions } from './options.js';
import { Progress, bothSides } from './progress.js';
import { addPayload } from './reduce.js';
import { allGatherStep, frames, reduceScatterStep, segments, type Segment } from './schedule.js';

/** One ring step as this rank sees it: the segment it sends and the one it receives. */
interface Hop {
  phase: Phase;
  index: number;
  send: number;
  receive: number;
}

function hops(rank: number, n: number): Hop[] {
  const out: Hop[] = [];
  for (let k = 0; k < n - 1; k++)
    out.push({ phase: 'reduce-scatter', index: k, ...reduceScatterStep(rank, n, k) });
  for (let k = 0; k < n - 1; k++)
    out.push({ phase: 'all-gather', index: k, ...allGatherStep(rank, n, k) });
  return out;
}

export interface PipelineContext {
  rank: number;
  worldSize: number;
  outbox: ChunkSender;
  inbox: ChunkReceiver;
  /** Elements per piece of the wire dtype. */
  pieceElements: number;
  checksum: boolean;
  limits: WireLimits;
  /** Room for one piece as float32, for payloads that cannot be viewed in place. */
  scratch: Float32Array;
}

export class Pipeline {
  private readonly hops: Hop[];
  private readonly spans: Segment[];
  /** Pieces received and processed so far, in the order they arrive. */
  private readonly received = new Progress();
  /** Arrived all-gather payloads to pass on, by arrival number. */
  private readonly forward = new Map<number, Buffer>();
  /** Payloads passed on, handed back to the receiver once the sender has flushed. */
  private readonly passedOn: Buffer[] = [];

  constructor(
    private readonly c: PipelineContext,
    private readonly buffer: Float32Array,
    private readonly tag: Required<AllReduceOptions>,
  ) {
    this.hops = hops(c.rank, c.worldSize);
    this.spans = segments(buffer.length, c.worldSize);
  }

  async run(): Promise<void> {
    await bothSides(this.receiveAll(), this.received, this.sendAll());
    // Views of the caller's buffer and received payloads may still wait in the sender's queue.
    await this.c.outbox.written(this.c.outbox.sent, 'the last pieces');
    for (const payload of this.passedOn) this.c.inbox.release(payload);
  }

  private pieces(segment: number): Segment[] {
    return frames(this.spans[segment]!.length, this.c.pieceElements);
  }

  private async sendAll(): Promise<void> {
    const { runId, step, wireDtype, generation } = this.tag;
    const first = this.pieces(this.hops[0]!.send).length;
    let sent = 0;
    for (const [g, hop] of this.hops.entries()) {
      const span = this.spans[hop.send]!;
      for (const piece of this.pieces(hop.send)) {
        // The piece of step g - 1 this one is: it must have arrived (and been reduced).
        const source = sent - first;
        if (g > 0) await this.received.reach(source + 1);
        const payload = this.payload(g, span, piece, source);
        const message = encodeChunk(
          {
            runId,
            generation,
            step,
            phase: hop.phase,
            index: hop.index,
            senderRank: this.c.rank,
            dtype: wireDtype,
            segment: hop.send,
            offset: piece.start,
            payload,
          },
          { checksum: this.c.checksum, limits: this.c.limits },
        );
        await this.c.outbox.send(message, `${hop.phase} #${hop.index} segment ${hop.send}`);
        sent++;
      }
    }
  }

  /** The bytes of the g-th step's piece; `source` numbers the arrival it passes on. */
  private payload(g: number, span: Segment, piece: Segment, source: number): Uint8Array {
    const n = this.c.worldSize;
    const { wireDtype } = this.tag;
    if (g >= n) {
      const arrived = this.forward.get(source)!;
      this.forward.delete(source);
      this.passedOn.push(arrived);
      return arrived; // another owner's bytes, verbatim
    }
    const start = span.start + piece.start;
    const values = this.buffer.subarray(start, start + piece.length);
    const bytes = encodeFloats(values, wireDtype); // f32: a view; halves: new bytes
    // The owned segment (all-gather step 0) leaves as a copy if the sender may still read it
    // after the call (ZeroMQ): see the file comment.
    const copy = g === n - 1 && wireDtype === 'f32' && this.c.outbox.holdsPayloads;
    return copy ? Buffer.from(bytes) : bytes;
  }

  private async receiveAll(): Promise<void> {
    const { runId, step, wireDtype, generation } = this.tag;
    const n = this.c.worldSize;
    for (const [g, hop] of this.hops.entries()) {
      const span = this.spans[hop.receive]!;
      for (const piece of this.pieces(hop.receive)) {
        const chunk = await this.c.inbox.receive({
          runId,
          generation,
          step,
          phase: hop.phase,
          index: hop.index,
          segment: hop.receive,
          offset: piece.start,
          dtype: wireDtype,
          length: piece.length,
        });
        const start = span.start + piece.start;
        const target = this.buffer.subarray(start, start + piece.length);
        if (hop.phase === 'reduce-scatter') {
          addPayload(chunk.payload, target, wireDtype, this.c.scratch);
          this.c.inbox.release(chunk.payload);
          // The owner's last addition: round to what the wire carries, as everyone will see it.
          if (g === n - 2) roundToWire(target, wireDtype);
        } else {
          decodeFloats(chunk.payload, wireDtype, target); // the owner's bytes, verbatim
          if (g < 2 * n - 3) this.forward.set(this.received.value, chunk.payload as Buffer);
          else this.c.inbox.release(chunk.payload);
        }
        this.received.advance();
      }
    }
  }
}
