// Ring all-reduce (sum) of a Float32Array over ZeroMQ, bitwise identical on every
// rank: each segment's sum is computed once, by its owner, in a fixed order (see
// schedule.ts), then broadcast verbatim. With fp16/bf16 on the wire, the owner
// rounds its sum to the wire type before broadcasting, so it too ends with the
// value everyone else decodes.
//
// With `curve` in the options every link runs ZeroMQ CURVE: each rank's PULL is a
// CURVE server admitting only its left neighbour's key, each PUSH a CURVE client
// that only talks to its right neighbour's key.
import { Pull, Push } from 'zeromq';
import {
  BYTES_PER_ELEMENT,
  CHUNK_HEADER_BYTES,
  decodeFloats,
  encodeChunk,
  encodeFloats,
  roundToWire,
  type Phase,
  type WireDtype,
} from '@lorafleet/protocol';
import { curveClientOptions, curveServerOptions } from './curve.js';
import { Inbox, Outbox, RingError, type Peer } from './links.js';
import {
  checkAllReduceOptions,
  resolveRingOptions,
  type AllReduceOptions,
  type RingOptions,
  type RingSettings,
} from './options.js';
import { allGatherStep, frames, reduceScatterStep, segments, type Segment } from './schedule.js';
import { CurveAuthenticator } from './zap.js';

/** One segment moving one hop in one ring step. */
interface Move {
  phase: Phase;
  index: number;
  segment: number;
  span: Segment;
}

export class RingAllReduce {
  readonly rank: number;
  readonly worldSize: number;
  private outbox: Outbox | undefined;
  private inbox: Inbox | undefined;
  private push: Push | undefined;
  private readonly scratch: Float32Array;
  private busy = false;
  private broken: Error | undefined;
  private closed = false;

  private constructor(
    private readonly settings: RingSettings,
    private readonly pull: Pull | undefined,
    /** The bound endpoint, port resolved: what the left neighbour connects to. */
    readonly endpoint: string,
    /** With CURVE: admits the left neighbour's key to `pull`. */
    private readonly authenticator?: CurveAuthenticator,
  ) {
    this.rank = settings.rank;
    this.worldSize = settings.worldSize;
    // Room for one received frame of the narrowest wire type (2-byte elements).
    this.scratch = new Float32Array(pull ? Math.floor(settings.frameBytes / 2) : 0);
  }

  /** Binds this rank's receiving socket. Share `endpoint` with the other ranks, then connect(). */
  static async bind(options: RingOptions): Promise<RingAllReduce> {
    const settings = resolveRingOptions(options);
    const { rank, worldSize, curve, log } = settings;
    if (worldSize === 1) return new RingAllReduce(settings, undefined, settings.listen);
    const left = (rank + worldSize - 1) % worldSize;
    // Before the socket exists: a CURVE server with no ZAP handler would admit any key.
    const authenticator = curve
      ? await CurveAuthenticator.acquire({
          keys: [curve.publicKeys[left]!],
          onRefusal: ({ reason }) => log(`rank ${rank}: ${reason} (only rank ${left}'s key is)`),
        })
      : undefined;
    const pull = new Pull({
      receiveHighWaterMark: settings.highWaterMark,
      // libzmq drops a connection that sends a larger message before we allocate it.
      maxMessageSize: settings.limits.maxChunkPayloadBytes + CHUNK_HEADER_BYTES,
      linger: 0,
      ...(curve && authenticator && curveServerOptions(curve.keyPair, authenticator.domain)),
    });
    try {
      await pull.bind(settings.listen);
    } catch (error) {
      pull.close();
      authenticator?.close();
      throw new RingError(`rank ${rank}: cannot bind ${settings.listen}: ${String(error)}`);
    }
    return new RingAllReduce(settings, pull, pull.lastEndpoint ?? settings.listen, authenticator);
  }

  /** Connects to the right neighbour. `endpoints[r]` is rank r's `endpoint`; CURVE keys came with bind(). */
  connect(endpoints: readonly string[]): void {
    const { rank, worldSize, timeoutMs, highWaterMark, checksum, limits, log, curve } =
      this.settings;
    if (endpoints.length !== worldSize) {
      throw new RangeError(`connect: ${endpoints.length} endpoints for a ring of ${worldSize}`);
    }
    if (worldSize === 1 || this.push) return;
    if (this.closed || !this.pull) throw new RingError(`rank ${rank}: connect on a closed ring`);
    const peer = (r: number): Peer => ({ rank: r, endpoint: endpoints[r] ?? '' });
    const right = peer((rank + 1) % worldSize);
    const left = peer((rank + worldSize - 1) % worldSize);
    // Linger lets the last frames reach a slower neighbour after we close.
    const push = new Push({
      sendHighWaterMark: highWaterMark,
      sendTimeout: timeoutMs,
      linger: Math.min(timeoutMs, 5000),
      ...(curve && curveClientOptions(curve.keyPair, curve.publicKeys[right.rank]!)),
    });
    if (curve) {
      // Otherwise a refused key looks like a silent neighbour until the timeout.
      push.events.on('handshake:error:auth', () =>
        log(
          `rank ${rank}: rank ${right.rank} (${right.endpoint}) refused this rank's CURVE key ` +
            "(do the ranks agree on the ring's public keys?)",
        ),
      );
    }
    push.connect(right.endpoint);
    this.push = push;
    this.outbox = new Outbox(push, rank, right, timeoutMs);
    this.inbox = new Inbox(this.pull, rank, left, timeoutMs, limits, checksum, log);
  }

  /** Sums `buffer` in place across all ranks. Every rank calls it with the same length and options. */
  async allReduce(buffer: Float32Array, options: AllReduceOptions): Promise<void> {
    const tag = checkAllReduceOptions(options);
    const rank = this.rank;
    if (this.closed) throw new RingError(`rank ${rank}: allReduce on a closed ring`);
    if (this.worldSize === 1) return;
    if (!this.outbox || !this.inbox)
      throw new RingError(`rank ${rank}: allReduce before connect()`);
    if (this.broken) {
      throw new RingError(
        `rank ${rank}: the ring is broken by an earlier failure (${this.broken.message}); ` +
          'close it and form a new one',
      );
    }
    if (this.busy) throw new RingError(`rank ${rank}: allReduce called while another is in flight`);
    this.busy = true;
    try {
      await this.run(buffer, tag);
    } catch (error) {
      // Frames of this call may still be in flight either way: never reuse these sockets.
      this.broken = error as Error;
      throw error;
    } finally {
      this.busy = false;
    }
  }

  private async run(buffer: Float32Array, tag: Required<AllReduceOptions>): Promise<void> {
    const n = this.worldSize;
    const spans = segments(buffer.length, n);
    const move = (phase: Phase, index: number, segment: number): Move => ({
      phase,
      index,
      segment,
      span: spans[segment]!,
    });
    for (let k = 0; k < n - 1; k++) {
      const { send, receive } = reduceScatterStep(this.rank, n, k);
      await this.exchange(
        buffer,
        move('reduce-scatter', k, send),
        move('reduce-scatter', k, receive),
        tag,
      );
    }
    const owned = spans[(this.rank + 1) % n]!;
    roundToWire(buffer.subarray(owned.start, owned.start + owned.length), tag.wireDtype);
    for (let k = 0; k < n - 1; k++) {
      const { send, receive } = allGatherStep(this.rank, n, k);
      await this.exchange(buffer, move('all-gather', k, send), move('all-gather', k, receive), tag);
    }
  }

  /** One ring step: send one segment right while receiving another from the left. */
  private async exchange(
    buffer: Float32Array,
    out: Move,
    into: Move,
    tag: Required<AllReduceOptions>,
  ): Promise<void> {
    const sending = this.send(buffer, out, tag);
    // If receiving fails first, the send's own failure is the same story: do not report it twice.
    sending.catch(() => undefined);
    await this.receive(buffer, into, tag);
    await sending;
  }

  private async send(
    buffer: Float32Array,
    m: Move,
    tag: Required<AllReduceOptions>,
  ): Promise<void> {
    const { runId, step, wireDtype } = tag;
    const { checksum, limits } = this.settings;
    for (const f of frames(m.span.length, this.maxElements(wireDtype))) {
      const start = m.span.start + f.start;
      const payload = encodeFloats(buffer.subarray(start, start + f.length), wireDtype);
      const frame = encodeChunk(
        {
          runId,
          step,
          phase: m.phase,
          index: m.index,
          senderRank: this.rank,
          dtype: wireDtype,
          segment: m.segment,
          offset: f.start,
          payload,
        },
        { checksum, limits },
      );
      await this.outbox!.send(frame, `${m.phase} #${m.index} segment ${m.segment}`);
    }
  }

  private async receive(
    buffer: Float32Array,
    m: Move,
    tag: Required<AllReduceOptions>,
  ): Promise<void> {
    const { runId, step, wireDtype } = tag;
    for (const f of frames(m.span.length, this.maxElements(wireDtype))) {
      const expect = {
        runId,
        step,
        phase: m.phase,
        index: m.index,
        segment: m.segment,
        offset: f.start,
        dtype: wireDtype,
        length: f.length,
      };
      const chunk = await this.inbox!.receive(expect);
      const start = m.span.start + f.start;
      const target = buffer.subarray(start, start + f.length);
      if (m.phase === 'all-gather') {
        decodeFloats(chunk.payload, wireDtype, target); // the owner's bytes, verbatim
        continue;
      }
      const partial = this.scratch.subarray(0, f.length);
      decodeFloats(chunk.payload, wireDtype, partial);
      // float32 + float32 in double, stored as float32: exactly the IEEE float32 sum.
      for (let i = 0; i < target.length; i++) target[i] = partial[i]! + target[i]!;
    }
  }

  private maxElements(dtype: WireDtype): number {
    return Math.floor(this.settings.frameBytes / BYTES_PER_ELEMENT[dtype]);
  }

  /** Releases both sockets. A pending allReduce rejects; the ring cannot be reused. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.push?.close();
    this.pull?.close();
    this.authenticator?.close();
  }
}
