// Who may connect to a CURVE server socket: ZeroMQ asks a ZAP handler (RFC 27,
// ZAP 1.0) bound at inproc://zeromq.zap.01 in the socket's context, once per
// incoming connection, and closes the connection unless it answers 200.
//
// libzmq allows one ZAP handler per context, and every server socket of this
// process lives in zeromq's default context. So the handler here is one per
// process, started by the first CurveAuthenticator and stopped with the last;
// each CurveAuthenticator is one server socket's policy (the keys it admits),
// found by the ZAP domain the socket sets (curveServerOptions(keys, auth.domain)).
// A request for any other domain, or with a mechanism other than CURVE, gets 400.
import { Router } from 'zeromq';
import { isZ85Key, z85Encode } from './curve.js';

const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';

/** A connection the authenticator turned away. */
export interface ZapRefusal {
  /** The peer's IP address, as libzmq reports it. */
  address: string;
  mechanism: string;
  /** The client's CURVE public key (Z85), when it offered one. */
  publicKey?: string;
  /** One line: what was refused and why. */
  reason: string;
}

export interface AuthenticatorOptions {
  /** Public keys admitted from the start (Z85). */
  keys?: Iterable<string>;
  /** Where refusals are reported. Default: console.warn. */
  onRefusal?: (refusal: ZapRefusal) => void;
  /**
   * The guarded server socket's linger (ms; default 0). The process's ZAP
   * handler outlives close() by this plus ZAP_CLOSE_MARGIN_MS: a session of
   * the server socket still being torn down when the handler closes makes
   * libzmq 4.3.5 abort the process ("Assertion failed: _state == term_ack_sent
   * || _state == term_req_sent2 (pipe.cpp:355)"; packages/collective/test/zap-close.test.ts).
   */
  serverLingerMs?: number;
}

/** How long the ZAP handler outlives the last server socket's linger: its sessions end on libzmq's I/O thread. */
export const ZAP_CLOSE_MARGIN_MS = 1000;

/** The process's ZAP handler: answers for every CurveAuthenticator alive. */
class ZapHandler {
  readonly policies = new Map<string, CurveAuthenticator>();
  private closing = false;
  private constructor(private readonly socket: Router) {}

  static async start(): Promise<ZapHandler> {
    await stopping;
    const socket = new Router({ linger: 0 });
    try {
      await socket.bind(ZAP_ENDPOINT);
    } catch (error) {
      socket.close();
      throw new Error(
        `cannot start the CURVE authenticator: ${ZAP_ENDPOINT} is taken (${String(error)}); ` +
          'is another ZAP handler running in this process?',
      );
    }
    const handler = new ZapHandler(socket);
    void handler.serve();
    return handler;
  }

  private async serve(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        const reply = this.answer(frames);
        if (reply) await this.socket.send(reply);
      }
    } catch (error) {
      // Only a closed socket ends the loop normally; anything else leaves servers refusing all.
      if (!this.socket.closed && !this.closing)
        console.error(`[lorafleet/collective] ZAP handler stopped: ${String(error)}`);
    }
  }

  /** The reply frames to one request: [routing id, '', version, request id, status, text, user id, metadata]. */
  private answer(frames: Buffer[]): (Buffer | string)[] | undefined {
    const [routingId, delimiter, version, requestId, domain, address, , mechanism, ...credentials] =
      frames;
    if (routingId === undefined || requestId === undefined || mechanism === undefined) return;
    const reply = (status: '200' | '400' | '500', text: string, userId = '') => [
      routingId,
      delimiter ?? '',
      '1.0',
      requestId,
      status,
      text,
      userId,
      '',
    ];
    if (version?.toString() !== '1.0') return reply('500', 'ZAP version 1.0 expected');
    const policy = this.policies.get(domain?.toString() ?? '');
    if (!policy) return reply('400', 'no CURVE authenticator for this ZAP domain');
    const verdict = policy.judge(address?.toString() ?? '?', mechanism.toString(), credentials[0]);
    return verdict.ok ? reply('200', 'OK', verdict.publicKey) : reply('400', verdict.reason);
  }

  /** Unbinds before closing: a closed socket with a receive pending holds its endpoint a while. */
  close(): void {
    const { socket } = this;
    this.closing = true;
    stopping = socket
      .unbind(ZAP_ENDPOINT)
      .catch(() => undefined)
      .then(() => socket.close());
  }
}

/** The last handler's unbind; the next one binds after it. */
let stopping: Promise<void> = Promise.resolve();
/** The running handler, how many policies hold it, and until when it must stay (performance.now()). */
interface Shared {
  handler: Promise<ZapHandler>;
  holders: number;
  keepUntil: number;
  closeTimer?: NodeJS.Timeout;
}
let shared: Shared | undefined;
let domains = 0;

/** One CURVE server socket's admission policy: the client public keys it lets in. */
export class CurveAuthenticator {
  private readonly keys = new Set<string>();
  private closed = false;

  private constructor(
    /** Set as the server socket's zapDomain (curveServerOptions does). */
    readonly domain: string,
    private readonly handler: ZapHandler,
    private readonly onRefusal: (refusal: ZapRefusal) => void,
    private readonly serverLingerMs: number,
  ) {}

  /** Starts the process's ZAP handler if none runs yet. Call close() when the socket closes. */
  static async acquire(options: AuthenticatorOptions = {}): Promise<CurveAuthenticator> {
    const keys = [...(options.keys ?? [])];
    for (const key of keys) checkKey(key);
    const hold = (shared ??= { handler: ZapHandler.start(), holders: 0, keepUntil: 0 });
    clearTimeout(hold.closeTimer);
    hold.holders += 1;
    let handler: ZapHandler;
    try {
      handler = await hold.handler;
    } catch (error) {
      if (shared === hold) shared = undefined;
      throw error;
    }
    const domain = `lorafleet-${process.pid}-${++domains}`;
    const auth = new CurveAuthenticator(
      domain,
      handler,
      options.onRefusal ?? ((r) => console.warn(`[lorafleet/collective] ${r.reason}`)),
      options.serverLingerMs ?? 0,
    );
    for (const key of keys) auth.keys.add(key);
    handler.policies.set(domain, auth);
    return auth;
  }

  allow(publicKey: string): void {
    checkKey(publicKey);
    this.keys.add(publicKey);
  }

  /** Stops admitting `publicKey`; connections it already made stay up. */
  revoke(publicKey: string): void {
    this.keys.delete(publicKey);
  }

  allows(publicKey: string): boolean {
    return this.keys.has(publicKey);
  }

  /** @internal The ZAP handler's question: may this client in? */
  judge(
    address: string,
    mechanism: string,
    credential: Buffer | undefined,
  ): { ok: true; publicKey: string } | { ok: false; reason: string } {
    const refuse = (reason: string, publicKey?: string) => {
      this.onRefusal({ address, mechanism, reason, ...(publicKey ? { publicKey } : {}) });
      return { ok: false as const, reason };
    };
    if (this.closed) return refuse(`refused ${address}: the server socket is closing`);
    if (mechanism !== 'CURVE' || credential?.length !== 32) {
      return refuse(`refused ${address}: it did not use CURVE (mechanism ${mechanism})`);
    }
    const publicKey = z85Encode(credential);
    if (!this.keys.has(publicKey)) {
      return refuse(`refused ${address}: CURVE key ${publicKey} is not admitted`, publicKey);
    }
    return { ok: true, publicKey };
  }

  /**
   * Forgets this policy (its domain then gets 400 at once). Call it after
   * closing the server socket. The ZAP handler stops once no policy holds it
   * and every released socket's linger (plus ZAP_CLOSE_MARGIN_MS) is over;
   * an acquire() before then keeps it.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.handler.policies.delete(this.domain);
    const hold = shared;
    if (!hold) return;
    const now = performance.now();
    hold.keepUntil = Math.max(hold.keepUntil, now + this.serverLingerMs + ZAP_CLOSE_MARGIN_MS);
    if (--hold.holders > 0) return;
    hold.closeTimer = setTimeout(() => {
      if (shared !== hold || hold.holders > 0) return;
      shared = undefined;
      this.handler.close();
    }, hold.keepUntil - now);
  }
}

function checkKey(key: string): void {
  if (!isZ85Key(key)) {
    throw new RangeError(`${JSON.stringify(key)} is not a CURVE public key (40 Z85 characters)`);
  }
}
