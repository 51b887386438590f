// Ring all-reduce (sum) of a Float32Array over TCP or ZeroMQ, bitwise identical on
// every rank: each segment's sum is computed once, by its owner, in a fixed order
// (see schedule.ts), then broadcast verbatim. Two ranks exchange whole buffers
// instead (exchange.ts) when the buffer is small (exchanges() says when). With fp16/bf16 on the wire, the owner
// rounds its sum to the wire type before broadcasting, so it too ends with the
// value everyone else decodes.
//
// With `curve` in the options every link runs ZeroMQ CURVE: each rank's PULL is a
// CURVE server admitting only its left neighbour's key, each PUSH a CURVE client
// that only talks to its right neighbour's key.
import type { Server } from 'node:net';
import { Pull, Push } from 'zeromq';
import { BYTES_PER_ELEMENT, CHUNK_HEADER_BYTES } from '@lorafleet/protocol';
import { curveClientOptions, curveServerOptions } from './curve.js';
import {
  Inbox,
  Outbox,
  RingError,
  type ChunkReceiver,
  type ChunkSender,
  type Peer,
} from './links.js';
import {
  checkAllReduceOptions,
  resolveRingOptions,
  type AllReduceOptions,
  type RingOptions,
  type RingSettings,
} from './options.js';
import { PairExchange } from './exchange.js';
import { Pipeline } from './pipeline.js';
import { listenTcp, type TcpLinkOptions } from './tcp.js';
import { TcpInbox } from './tcp-inbox.js';
import { TcpOutbox } from './tcp-outbox.js';
import { CurveAuthenticator } from './zap.js';

export class RingAllReduce {
  readonly rank: number;
  readonly worldSize: number;
  private outbox: ChunkSender | undefined;
  private inbox: ChunkReceiver | undefined;
  private push: Push | undefined;
  /** The tcp transport's ends (the outbox listens from bind() on). */
  private tcpOutbox: TcpOutbox | undefined;
  private tcpInbox: TcpInbox | undefined;
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
    server?: Server,
  ) {
    this.rank = settings.rank;
    this.worldSize = settings.worldSize;
    // Room for one received piece of the narrowest wire type (2-byte elements).
    this.scratch = new Float32Array(pull || server ? Math.floor(settings.frameBytes / 2) : 0);
    if (server) {
      this.tcpOutbox = new TcpOutbox(server, this.tcpOptions(), (this.rank + 1) % this.worldSize);
    }
  }

  private tcpOptions(): TcpLinkOptions {
    const { rank, worldSize, timeoutMs, frameBytes, highWaterMark, limits, checksum, log } =
      this.settings;
    return { rank, worldSize, timeoutMs, frameBytes, highWaterMark, limits, checksum, log };
  }

  /**
   * Binds this rank's receiving end (a ZeroMQ PULL, or with the tcp transport the server its
   * right neighbour connects to). Share `endpoint` with the other ranks, then connect().
   */
  static async bind(options: RingOptions): Promise<RingAllReduce> {
    const settings = resolveRingOptions(options);
    const { rank, worldSize, curve, log } = settings;
    if (worldSize === 1) return new RingAllReduce(settings, undefined, settings.listen);
    if (settings.transport === 'tcp') {
      try {
        const { server, endpoint } = await listenTcp(settings.listen);
        return new RingAllReduce(settings, undefined, endpoint, undefined, server);
      } catch (error) {
        throw new RingError(`rank ${rank}: cannot bind ${settings.listen}: ${String(error)}`);
      }
    }
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
    if (worldSize === 1 || this.outbox) return;
    if (this.closed) throw new RingError(`rank ${rank}: connect on a closed ring`);
    const peer = (r: number): Peer => ({ rank: r, endpoint: endpoints[r] ?? '' });
    const right = peer((rank + 1) % worldSize);
    const left = peer((rank + worldSize - 1) % worldSize);
    if (this.tcpOutbox) {
      this.tcpOutbox.connectTo(right);
      this.tcpInbox = new TcpInbox(this.tcpOptions(), left);
      this.outbox = this.tcpOutbox;
      this.inbox = this.tcpInbox;
      return;
    }
    if (!this.pull) throw new RingError(`rank ${rank}: connect on a closed ring`);
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
    const { checksum, limits, frameBytes } = this.settings;
    const context = {
      rank: this.rank,
      worldSize: this.worldSize,
      outbox: this.outbox!,
      inbox: this.inbox!,
      pieceElements: Math.floor(frameBytes / BYTES_PER_ELEMENT[tag.wireDtype]),
      checksum,
      limits,
      scratch: this.scratch,
    };
    await (
      this.exchanges(buffer.length * BYTES_PER_ELEMENT[tag.wireDtype])
        ? new PairExchange(context, buffer, tag)
        : new Pipeline(context, buffer, tag)
    ).run();
  }

  /**
   * Whether a call of `wireBytes` runs as the two-rank exchange. 'auto' takes it up to one
   * piece: measured on the CPU machine (test/bench/allreduce/README.md), it beat the ring
   * 1.6-5.8x at 64 KiB and 1.3-3.4x at 1 MiB, and lost from 4 MiB, where the ring adds one
   * segment while it sends the other, and the exchange adds twice the bytes.
   */
  private exchanges(wireBytes: number): boolean {
    const { algorithm, worldSize, frameBytes } = this.settings;
    if (algorithm === 'auto') return worldSize === 2 && wireBytes <= frameBytes;
    return algorithm === 'exchange';
  }

  /** Releases both sockets. A pending allReduce rejects; the ring cannot be reused. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.push?.close();
    this.pull?.close();
    this.tcpOutbox?.close();
    this.tcpInbox?.close();
    this.authenticator?.close();
  }
}
