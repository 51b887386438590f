// The ring's data plane on plain TCP (or unix sockets) through node:net, used when
// CURVE is off. Measured on the 2-core machine (docs/wire.md): exchanging 1 MiB
// took ~5 ms of CPU per call over ZeroMQ (its I/O thread, a fresh allocation and
// its page faults per received message, three thread wake-ups per hop) and
// ~0.6 ms over a node:net socket reading into reused buffers.
//
// A link is one TCP connection, made by the RECEIVING rank to its left
// neighbour's server: only a connecting socket can read into our own buffers
// (node's `onread`), so each received piece lands, with no copy beyond the
// kernel's, in a buffer from a pool of piece-sized buffers. The connecting rank
// opens with a hello (magic, rank, world size), and the server keeps the first
// connection from its right neighbour and closes any other.
//
// On the wire a chunk is [u32 header length][u32 payload length][header][payload]
// (little-endian), the header being the very protobuf header frame ZeroMQ carries,
// with its CRC-32, checked the same way (links.ts: checkArrival).
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { CHUNK_HEADER_BYTES, type Chunk, type WireLimits } from '@lorafleet/protocol';
import {
  checkArrival,
  describe,
  RingError,
  type ChunkReceiver,
  type ChunkSender,
  type Expected,
  type Peer,
} from './links.js';
import { boundEndpoint, parseEndpoint } from './tcp-address.js';

const MAGIC = Buffer.from('LFRING\0\x01', 'latin1');
const HELLO_BYTES = MAGIC.length + 8;
const PREFIX_BYTES = 8;
/** How often a receiving rank retries a refused connection (its neighbour may bind late). */
const RETRY_MS = 50;

/** Binds the server a rank's right neighbour connects to; resolves with it and its endpoint. */
export async function listenTcp(listen: string): Promise<{ server: Server; endpoint: string }> {
  const address = parseEndpoint(listen);
  const server = createServer({ noDelay: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, endpoint: 'path' in address ? listen : boundEndpoint(server, listen) };
}

export interface TcpLinkOptions {
  rank: number;
  worldSize: number;
  timeoutMs: number;
  /** Largest piece payload a sender sends: the size of the pooled receive buffers. */
  frameBytes: number;
  /** Pieces received and not yet taken before the link stops reading (TCP then holds the sender). */
  highWaterMark: number;
  limits: WireLimits;
  checksum: boolean;
  log: (line: string) => void;
}

/**
 * Waits on `server` for the right neighbour's connection and sends to it. Frames are written
 * without copies (cork/uncork makes one writev of prefix, header and payload); the queue in
 * node's memory is bounded by highWaterMark pieces, beyond which send() waits for a drain.
 */
export class TcpOutbox implements ChunkSender {
  readonly holdsPayloads = false;
  private socket: Socket | undefined;
  private readonly accepted: Promise<Socket>;
  private closedWhy = '';
  private readonly queueBytes: number;
  /** Writes node has not yet handed to the kernel, and who waits for there to be none. */
  private unwritten = 0;
  private flushed: (() => void)[] = [];
  private readonly written = () => {
    if (--this.unwritten > 0) return;
    for (const resolve of this.flushed.splice(0)) resolve();
  };
  /** Known once connect() gives the endpoints; the rank is known from the start. */
  private peer: Peer;
  /** Rejects once close() is called: ends the waits that no socket event would end. */
  private readonly closing: Promise<never>;
  private markClosed: (error: Error) => void = () => undefined;

  /** Listens from bind() on: the right neighbour may connect before this rank's connect(). */
  constructor(
    private readonly server: Server,
    private readonly o: TcpLinkOptions,
    right: number,
  ) {
    this.peer = { rank: right, endpoint: '' };
    this.closing = new Promise((_, reject) => (this.markClosed = reject));
    this.closing.catch(() => undefined);
    this.queueBytes = o.highWaterMark * (o.frameBytes + CHUNK_HEADER_BYTES);
    this.accepted = new Promise((resolve) => {
      server.on('connection', (socket) => this.admit(socket, resolve));
    });
  }

  /** The right neighbour's endpoint, for the error messages. */
  connectTo(peer: Peer): void {
    this.peer = peer;
  }

  /** Keeps the first connection whose hello names the right neighbour; closes any other. */
  private admit(socket: Socket, resolve: (s: Socket) => void): void {
    socket.setNoDelay(true);
    socket.on('error', () => undefined); // reported through 'close'
    let hello = Buffer.alloc(0);
    const refuse = (why: string) => {
      clearTimeout(timer);
      this.o.log(
        `rank ${this.o.rank}: refused a ring connection from ${socket.remoteAddress}: ${why}`,
      );
      socket.destroy();
    };
    const timer = setTimeout(
      () => refuse(`no hello within ${this.o.timeoutMs} ms`),
      this.o.timeoutMs,
    );
    const onData = (data: Buffer) => {
      hello = Buffer.concat([hello, data]);
      // ZeroMQ's greeting waits for ours before it completes: tell it apart at its first byte.
      if (hello.length < HELLO_BYTES && hello[0] !== 0xff) return;
      clearTimeout(timer);
      socket.off('data', onData);
      const why = this.refusal(hello);
      if (why) return refuse(why);
      // Nothing more comes this way; reading on tells us when the neighbour goes.
      socket.on('data', () => undefined);
      socket.on('close', () => (this.closedWhy ||= 'its connection closed'));
      this.socket = socket;
      resolve(socket);
    };
    socket.on('data', onData);
  }

  private refusal(hello: Buffer): string | undefined {
    if (hello[0] === 0xff) {
      return 'a ZeroMQ peer (every rank must use the same ring transport; CURVE runs the ring on ZeroMQ)';
    }
    if (!hello.subarray(0, MAGIC.length).equals(MAGIC)) return 'not a LoRA Fleet ring peer';
    const rank = hello.readUInt32LE(MAGIC.length);
    const worldSize = hello.readUInt32LE(MAGIC.length + 4);
    if (worldSize !== this.o.worldSize)
      return `a rank of a ring of ${worldSize}, not ${this.o.worldSize}`;
    if (rank !== this.peer.rank)
      return `rank ${rank}, where this rank sends to rank ${this.peer.rank}`;
    if (this.socket) return `a second connection from rank ${rank}`;
    return undefined;
  }

  async send(frames: Buffer[], what: string): Promise<void> {
    const socket = this.socket ?? (await this.connection(what));
    if (this.closedWhy || socket.destroyed) {
      return this.wait(what, this.closedWhy || 'its connection closed');
    }
    const [header, payload] = frames as [Buffer, Buffer];
    const prefix = Buffer.allocUnsafe(PREFIX_BYTES + header.length);
    prefix.writeUInt32LE(header.length, 0);
    prefix.writeUInt32LE(payload.length, 4);
    prefix.set(header, PREFIX_BYTES);
    socket.cork();
    this.unwritten++;
    socket.write(prefix, this.written);
    if (payload.length > 0) {
      this.unwritten++;
      socket.write(payload, this.written);
    }
    socket.uncork();
    if (socket.writableLength > this.queueBytes) await this.drained(socket, what);
  }

  /** Resolves once node has handed every write to the kernel (the caller may then reuse its buffer). */
  flush(): Promise<void> {
    if (this.unwritten === 0 || !this.socket || this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => this.flushed.push(resolve));
  }

  private async connection(what: string): Promise<Socket> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            this.error(
              `timed out after ${this.o.timeoutMs} ms waiting for a connection from rank ` +
                `${this.peer.rank} (${this.peer.endpoint}) to send ${what}: it is dead, stalled, ` +
                "or was not given this rank's endpoint",
            ),
          ),
        this.o.timeoutMs,
      );
    });
    try {
      return await Promise.race([this.accepted, timeout, this.closing]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits until node's queue for `socket` is empty, at most timeoutMs. */
  private drained(socket: Socket, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = (error?: Error) => {
        clearTimeout(timer);
        socket.off('drain', onDrain);
        socket.off('close', onClose);
        if (error) reject(error);
        else resolve();
      };
      const onDrain = () => done();
      const onClose = () => done(this.timeoutError(what, 'its connection closed'));
      const timer = setTimeout(
        () => done(this.timeoutError(what, 'it is not receiving')),
        this.o.timeoutMs,
      );
      socket.on('drain', onDrain);
      socket.on('close', onClose);
    });
  }

  /** A neighbour that went away: like a full ZeroMQ queue, the send fails at the timeout. */
  private wait(what: string, why: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((_, reject) => {
      timer = setTimeout(() => reject(this.timeoutError(what, why)), this.o.timeoutMs);
    });
    return Promise.race([timeout, this.closing]).finally(() => clearTimeout(timer));
  }

  private timeoutError(what: string, why: string): RingError {
    const { rank, endpoint } = this.peer;
    return this.error(
      `timed out after ${this.o.timeoutMs} ms sending ${what} to rank ${rank} (${endpoint}): ${why} ` +
        '(dead, stalled, or never bound that endpoint)',
    );
  }

  private error(message: string): RingError {
    return new RingError(`rank ${this.o.rank}: ${message}`, this.peer);
  }

  close(): void {
    this.markClosed(this.error('the ring was closed'));
    this.socket?.destroy();
    this.server.close();
    for (const resolve of this.flushed.splice(0)) resolve();
  }
}

/** Piece-sized receive buffers, reused so the kernel copies into memory that is already mapped. */
class BufferPool {
  private readonly free: ArrayBuffer[] = [];

  constructor(
    private readonly size: number,
    private readonly keep: number,
  ) {}

  take(length: number): Buffer {
    const slab = length <= this.size ? (this.free.pop() ?? new ArrayBuffer(this.size)) : undefined;
    return slab ? Buffer.from(slab, 0, length) : Buffer.allocUnsafeSlow(length);
  }

  give(view: Uint8Array): void {
    const slab = view.buffer;
    if (
      slab instanceof ArrayBuffer &&
      slab.byteLength === this.size &&
      this.free.length < this.keep
    ) {
      this.free.push(slab);
    }
  }
}

type Part = 'prefix' | 'header' | 'payload';

/**
 * Connects to the left neighbour's server and reads chunks off the stream, each part read
 * straight into its own buffer (node's onread with a buffer generator: every read is sized
 * to what the current part still needs, so a read never spans two parts).
 */
export class TcpInbox implements ChunkReceiver {
  private socket: Socket | undefined;
  private readonly pool: BufferPool;
  private readonly prefix = Buffer.alloc(PREFIX_BYTES);
  private readonly headerRoom = Buffer.alloc(CHUNK_HEADER_BYTES);
  private part: Part = 'prefix';
  private target: Buffer = this.prefix;
  private filled = 0;
  private header = Buffer.alloc(0);
  private readonly queue: Buffer[][] = [];
  private paused = false;
  private wake: (() => void) | undefined;
  /** Ends a pending receive when the ring is closed. */
  private abort: ((error: Error) => void) | undefined;
  private problem = '';
  private closed = false;
  private retry: NodeJS.Timeout | undefined;

  constructor(
    private readonly o: TcpLinkOptions,
    private readonly peer: Peer,
  ) {
    this.pool = new BufferPool(o.frameBytes, 2 * o.highWaterMark + 4);
    this.dial();
  }

  private dial(): void {
    if (this.closed) return;
    this.part = 'prefix';
    this.target = this.prefix;
    this.filled = 0;
    const socket = createConnection({
      ...parseEndpoint(this.peer.endpoint),
      noDelay: true,
      onread: { buffer: () => this.next(), callback: (n: number) => this.onRead(n) },
    });
    socket.once('connect', () => {
      const hello = Buffer.alloc(HELLO_BYTES);
      hello.set(MAGIC, 0);
      hello.writeUInt32LE(this.o.rank, MAGIC.length);
      hello.writeUInt32LE(this.o.worldSize, MAGIC.length + 4);
      socket.write(hello);
      this.problem = '';
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      this.problem = `its connection failed (${error.code ?? error.message})`;
    });
    socket.on('close', () => {
      if (socket !== this.socket || this.closed) return;
      if (socket.bytesRead > 0)
        this.problem = 'its connection closed (it exited, or closed its ring)';
      // Redial, as ZeroMQ reconnects: the neighbour may not be up yet, or may have re-formed its
      // ring on the same endpoint. Pieces lost with a connection end in a receive timeout.
      this.retry = setTimeout(() => this.dial(), RETRY_MS);
    });
    this.socket = socket;
  }

  /** The buffer the next read fills: what the current part still needs. */
  private next(): Buffer {
    return this.target.subarray(this.filled);
  }

  private onRead(n: number): boolean {
    this.filled += n;
    if (this.filled < this.target.length) return true;
    this.filled = 0;
    const proceed = {
      prefix: () => this.afterPrefix(),
      header: () => this.afterHeader(),
      payload: () => this.deliver(this.target),
    }[this.part]();
    return proceed;
  }

  private afterPrefix(): boolean {
    const headerBytes = this.prefix.readUInt32LE(0);
    const payloadBytes = this.prefix.readUInt32LE(4);
    if (
      headerBytes === 0 ||
      headerBytes > CHUNK_HEADER_BYTES ||
      payloadBytes > this.o.limits.maxChunkPayloadBytes
    ) {
      // A stream cannot resynchronise after a bad length: drop the connection, say why.
      this.problem = `it sent a chunk of ${headerBytes} + ${payloadBytes} bytes, beyond the limits (${CHUNK_HEADER_BYTES} + ${this.o.limits.maxChunkPayloadBytes}): not a ring peer of this version?`;
      this.o.log(
        `rank ${this.o.rank}: closing the link from rank ${this.peer.rank}: ${this.problem}`,
      );
      this.socket?.destroy();
      return false;
    }
    this.part = 'header';
    this.target = this.headerRoom.subarray(0, headerBytes);
    return true;
  }

  private afterHeader(): boolean {
    this.header = Buffer.from(this.target); // small; the room is reused for the next header
    const payloadBytes = this.prefix.readUInt32LE(4);
    if (payloadBytes === 0) return this.deliver(Buffer.alloc(0));
    this.part = 'payload';
    this.target = this.pool.take(payloadBytes);
    return true;
  }

  private deliver(payload: Buffer): boolean {
    this.queue.push([this.header, payload]);
    this.part = 'prefix';
    this.target = this.prefix;
    this.wake?.();
    if (this.queue.length < this.o.highWaterMark) return true;
    this.paused = true; // node stops reading; TCP's window holds the sender
    return false;
  }

  async receive(expect: Expected): Promise<Chunk> {
    const deadline = performance.now() + this.o.timeoutMs;
    let lastDrop = '';
    for (;;) {
      const parts = this.queue.shift() ?? (await this.arrival(deadline, expect, lastDrop));
      if (this.paused && this.queue.length < this.o.highWaterMark) {
        this.paused = false;
        this.socket?.resume();
      }
      const reason = checkArrival(parts, expect, this.peer.rank, this.o.limits, this.o.checksum);
      if (typeof reason !== 'string') return reason;
      this.release(parts[1]!);
      lastDrop = reason;
      this.o.log(`rank ${this.o.rank}: dropped ${reason}; waiting for ${describe(expect)}`);
    }
  }

  private arrival(deadline: number, expect: Expected, lastDrop: string): Promise<Buffer[]> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const parts = this.queue.shift();
        if (!parts) return;
        clearTimeout(timer);
        this.wake = undefined;
        resolve(parts);
      };
      const timer = setTimeout(
        () => {
          this.wake = undefined;
          const { rank, endpoint } = this.peer;
          reject(
            new RingError(
              `rank ${this.o.rank}: timed out after ${this.o.timeoutMs} ms waiting for ${describe(expect)} ` +
                `from rank ${rank} (${endpoint}): it is dead, stalled, or not part of this all-reduce` +
                (this.problem ? `; ${this.problem}` : '') +
                (lastDrop ? `; last frame dropped meanwhile: ${lastDrop}` : ''),
              this.peer,
            ),
          );
        },
        Math.max(1, deadline - performance.now()),
      );
      this.wake = check;
      this.abort = (error) => {
        clearTimeout(timer);
        this.wake = undefined;
        reject(error);
      };
    });
  }

  release(payload: Uint8Array): void {
    this.pool.give(payload);
  }

  close(): void {
    this.closed = true;
    this.abort?.(new RingError(`rank ${this.o.rank}: the ring was closed`, this.peer));
    this.abort = undefined;
    clearTimeout(this.retry);
    this.socket?.destroy();
  }
}
