// The sending end of a TCP ring link (tcp.ts has the wire format): waits for
// the right neighbour's connection and writes chunks to it without copies.
import type { Server, Socket } from 'node:net';
import { RingError, type ChunkSender, type Peer } from './links.js';
import { HELLO_BYTES, MAGIC, PREFIX_BYTES, type TcpLinkOptions } from './tcp.js';

/**
 * Waits on `server` for the right neighbour's connection and sends to it. Frames are written
 * without copies (cork/uncork makes one writev of prefix, header and payload); the queue in
 * node's memory is bounded by highWaterMark pieces, beyond which send() waits for the oldest
 * to be handed to the kernel (write callbacks: a drain event would need node's own 16 KiB mark).
 */
export class TcpOutbox implements ChunkSender {
  readonly holdsPayloads = false;
  private socket: Socket | undefined;
  private readonly accepted: Promise<Socket>;
  private closedWhy = '';
  /** Chunks sent, chunks node has handed to the kernel (in order), and who waits for which. */
  sent = 0;
  private handedOver = 0;
  private waiters: { count: number; done: () => void }[] = [];
  private readonly chunkWritten = () => {
    this.handedOver++;
    this.waiters = this.waiters.filter((w) => {
      if (w.count > this.handedOver) return true;
      w.done();
      return false;
    });
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
      socket.on('close', () => {
        this.closedWhy ||= 'its connection closed';
        for (const w of this.waiters.splice(0)) w.done(); // nothing will be written now
      });
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
    this.sent++;
    // A chunk is written once its last write is: node completes writes in order.
    if (payload.length > 0) {
      socket.write(prefix);
      socket.write(payload, this.chunkWritten);
    } else {
      socket.write(prefix, this.chunkWritten);
    }
    socket.uncork();
    // At most highWaterMark chunks wait in node's memory; beyond, wait for the oldest to leave.
    if (this.sent - this.handedOver > this.o.highWaterMark) {
      await this.written(this.sent - this.o.highWaterMark, what);
      if (this.closedWhy) throw this.timeoutError(what, this.closedWhy);
    }
  }

  /**
   * Resolves once node has handed the first `count` chunks to the kernel, or the link is gone
   * (nothing will read the payloads then); rejects after timeoutMs of a neighbour not reading.
   */
  written(count: number, what: string): Promise<void> {
    if (this.handedOver >= count || !this.socket || this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(this.timeoutError(what, 'it is not receiving'));
      }, this.o.timeoutMs);
      const waiter = {
        count,
        done: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.waiters.push(waiter);
    });
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
    for (const w of this.waiters.splice(0)) w.done();
  }
}
