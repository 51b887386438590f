// The receiving end of a TCP ring link (tcp.ts has the wire format): connects
// to the left neighbour's server and reads each chunk's parts straight into
// buffers of its own (a pool of piece-sized ones for payloads).
import { createConnection, type Socket } from 'node:net';
import { CHUNK_HEADER_BYTES, type Chunk } from '@lorafleet/protocol';
import {
  checkArrival,
  describe,
  RingError,
  type ChunkReceiver,
  type Expected,
  type Peer,
} from './links.js';
import { parseEndpoint } from './tcp-address.js';
import { HELLO_BYTES, MAGIC, PREFIX_BYTES, RETRY_MS, type TcpLinkOptions } from './tcp.js';

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
