// The all-reduce of two ranks. With two ranks a rank's left and right neighbour
// are the same rank, and the ring's two dependent phases (send half, add the
// half that comes back, send that half's sum) fold into one: each rank sends
// its whole buffer and adds the other's. The same bytes per rank as the ring
// (2(n - 1)/n = 1 buffer at n = 2), but one exchange instead of two in a
// chain, so a small call pays one wake-up of the other process, not two, and
// no piece waits for another rank's arithmetic.
//
// Both ranks add the same two float32 operands, a + b on one and b + a on the
// other; IEEE addition is commutative, so they end bitwise identical, as the
// ring's ranks do. With fp16/bf16 on the wire a rank rounds its own piece to
// the wire type before sending it (what the other rank receives, so both add
// the same operands), and rounds the sum, as the ring's owner does.
//
// An f32 piece leaves as a view of the caller's buffer, which this rank then
// adds into: piece p's add waits until piece p has left this process's memory
// (ChunkSender.written). On ZeroMQ, which may read a payload later still
// (`holdsPayloads`), f32 pieces leave as copies.
import { encodeChunk, encodeFloats, decodeFloats, roundToWire } from '@lorafleet/protocol';
import type { AllReduceOptions } from './options.js';
import type { PipelineContext } from './pipeline.js';
import { Progress, bothSides } from './progress.js';
import { addPayload } from './reduce.js';
import { frames, type Segment } from './schedule.js';

export class PairExchange {
  private readonly pieces: Segment[];
  /** Pieces of this rank's buffer that are safe to add into: rounded, and out of our memory. */
  private readonly released = new Progress();

  constructor(
    private readonly c: PipelineContext,
    private readonly buffer: Float32Array,
    private readonly tag: Required<AllReduceOptions>,
  ) {
    this.pieces = frames(buffer.length, c.pieceElements);
  }

  run(): Promise<void> {
    return bothSides(this.sendAll(), this.released, this.receiveAll());
  }

  private view(piece: Segment): Float32Array {
    return this.buffer.subarray(piece.start, piece.start + piece.length);
  }

  private async sendAll(): Promise<void> {
    const { runId, step, wireDtype, generation } = this.tag;
    const { outbox } = this.c;
    // A view is read until it has left; a copy or a half-precision encoding is ours at once.
    const aliased = wireDtype === 'f32' && !outbox.holdsPayloads;
    const fail = (error: Error) => this.released.fail(error);
    for (const [p, piece] of this.pieces.entries()) {
      const values = this.view(piece);
      let payload = encodeFloats(values, wireDtype); // f32: a view; halves: new bytes
      if (wireDtype !== 'f32')
        decodeFloats(payload, wireDtype, values); // as the other rank sees it
      else if (outbox.holdsPayloads) payload = Buffer.from(payload);
      const message = encodeChunk(
        {
          runId,
          generation,
          step,
          phase: 'exchange',
          index: 0,
          senderRank: this.c.rank,
          dtype: wireDtype,
          segment: 0,
          offset: piece.start,
          payload,
        },
        { checksum: this.c.checksum, limits: this.c.limits },
      );
      await outbox.send(message, `exchange piece ${p}`);
      if (!aliased) this.released.advance();
      // Writes complete in order, so these advance in order. A timeout here is the send's failure.
      else
        outbox
          .written(outbox.sent, `exchange piece ${p}`)
          .then(() => this.released.advance(), fail);
    }
  }

  private async receiveAll(): Promise<void> {
    const { runId, step, wireDtype, generation } = this.tag;
    for (const [p, piece] of this.pieces.entries()) {
      const chunk = await this.c.inbox.receive({
        runId,
        generation,
        step,
        phase: 'exchange',
        index: 0,
        segment: 0,
        offset: piece.start,
        dtype: wireDtype,
        length: piece.length,
      });
      await this.released.reach(p + 1);
      const target = this.view(piece);
      addPayload(chunk.payload, target, wireDtype, this.c.scratch);
      this.c.inbox.release(chunk.payload);
      roundToWire(target, wireDtype);
    }
  }
}
