// One browser's server-sent event stream: the run's history, then every new
// event. The stream is a cursor into the log's shared history, written only as
// fast as the socket drains, so a slow client costs one socket buffer, never a
// growing queue; one that drains nothing for `stallMs` is dropped (it
// reconnects with Last-Event-ID and picks up where it left off).
import type { ServerResponse } from 'node:http';
import type { RunEventLog } from '../observe/events.js';

export interface StreamLimits {
  /** A comment line this often keeps proxies and the browser from timing out. */
  heartbeatMs: number;
  /** Drop a client whose socket has not drained for this long. */
  stallMs: number;
  /** Events are batched into writes of about this many bytes. */
  chunkBytes: number;
}

export const DEFAULT_STREAM_LIMITS: StreamLimits = {
  heartbeatMs: 15_000,
  stallMs: 30_000,
  chunkBytes: 64 * 1024,
};

export class EventStream {
  private cursor: number;
  private waiting = false;
  private closed = false;
  private stall: NodeJS.Timeout | undefined;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly unsubscribe: () => void;

  /**
   * `instance` names this server's history, so a Last-Event-ID from another
   * one (a restarted coordinator) starts over with a `reset` event.
   */
  constructor(
    private readonly res: ServerResponse,
    private readonly events: RunEventLog,
    private readonly instance: string,
    lastEventId: string | undefined,
    private readonly limits: StreamLimits,
    private readonly onClose: (stream: EventStream, reason: string) => void,
  ) {
    this.cursor = this.resumeAt(lastEventId);
    // The browser's reconnect delay after a dropped stream.
    res.write(this.cursor === 0 ? 'retry: 2000\nevent: reset\ndata: {}\n\n' : 'retry: 2000\n\n');
    this.unsubscribe = events.subscribe(() => this.pump());
    this.heartbeat = setInterval(() => {
      if (!this.waiting) res.write(': heartbeat\n\n');
    }, limits.heartbeatMs);
    res.on('close', () => this.close('disconnected'));
    this.pump();
  }

  /** Ends the stream (server shutdown, or a stalled client). */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    clearInterval(this.heartbeat);
    clearTimeout(this.stall);
    // A stalled client is cut off; otherwise what was written still reaches it (the run's last events).
    if (reason === 'stalled') this.res.destroy();
    else this.res.end();
    this.onClose(this, reason);
  }

  private resumeAt(lastEventId: string | undefined): number {
    const m = /^(.+)-(\d+)$/.exec(lastEventId ?? '');
    if (!m || m[1] !== this.instance) return 0;
    const seen = Number(m[2]);
    return seen <= this.events.history().length ? seen : 0;
  }

  private pump(): void {
    const history = this.events.history();
    while (!this.waiting && !this.closed && this.cursor < history.length) {
      let chunk = '';
      while (this.cursor < history.length && chunk.length < this.limits.chunkBytes) {
        const event = history[this.cursor++]!;
        chunk += `id: ${this.instance}-${this.cursor}\ndata: ${JSON.stringify(event)}\n\n`;
      }
      if (!this.res.write(chunk)) {
        this.waiting = true;
        this.stall = setTimeout(() => this.close('stalled'), this.limits.stallMs);
        this.res.once('drain', () => {
          clearTimeout(this.stall);
          this.waiting = false;
          this.pump();
        });
      }
    }
  }
}
