// The worker's end of the control plane: a DEALER connected to the
// coordinator's ROUTER, speaking @lorafleet/protocol's ControlMessage.
// A bad frame is logged and dropped, never a crash; the coordinator's silence
// beyond `timeoutMs` (it heartbeats while idle) is fatal, with a message that
// says where we were waiting. With `curve`, the link is a CURVE client: it
// only talks to the holder of the coordinator's public key, and the
// coordinator admits it only if its own key is authorized there.
import { Dealer } from 'zeromq';
import { type CurveKeyPair, curveClientOptions } from '@lorafleet/collective';
import {
  type ControlBody,
  type ControlMessage,
  type ErrorCode,
  decodeControl,
  encodeControl,
} from '@lorafleet/protocol';

/** The run id of a Hello: a worker learns its run from Welcome. */
export const UNASSIGNED_RUN = 'unassigned';

/** CURVE on the control plane: this worker's key pair and the coordinator's public key. */
export interface LinkCurve {
  keyPair: CurveKeyPair;
  serverPublicKey: string;
}

export class CoordinatorLink {
  private readonly socket: Dealer;
  private runId = UNASSIGNED_RUN;
  /** With CURVE: why the handshake failed, for the timeout's message; '' once one succeeded. */
  private handshake: string | undefined;
  /** The TCP connection to the coordinator, from the socket's events: up now, ever up, failed attempts. */
  private readonly tcp = { up: false, ever: false, failed: 0 };

  constructor(
    readonly endpoint: string,
    private readonly timeoutMs: number,
    private readonly log: (line: string) => void,
    curve?: LinkCurve,
  ) {
    // Linger: a last Error or StepDone still reaches the coordinator after close().
    this.socket = new Dealer({
      linger: 1000,
      sendTimeout: timeoutMs,
      ...(curve && curveClientOptions(curve.keyPair, curve.serverPublicKey)),
    });
    this.watchConnection();
    if (curve) this.watchHandshake(curve);
    try {
      this.socket.connect(endpoint);
    } catch (error) {
      this.socket.close();
      throw new Error(
        `cannot connect to the coordinator at ${endpoint}: ${(error as Error).message} ` +
          '(expected tcp://HOST:PORT, as `lorafleet train --workers N` prints)',
      );
    }
  }

  /** Without these, a wrong address or port looks like a coordinator that is slow to answer. */
  private watchConnection(): void {
    const events = this.socket.events;
    events.on('connect', () => Object.assign(this.tcp, { up: true, ever: true }));
    events.on('disconnect', () => (this.tcp.up = false));
    events.on('connect:retry', () => this.tcp.failed++);
  }

  /** Whether the TCP connection to the coordinator is up now. */
  get connected(): boolean {
    return this.tcp.up;
  }

  /** Where the TCP connection to the coordinator stands, for progress lines and errors. */
  connectionState(): string {
    const { up, ever, failed } = this.tcp;
    if (up) return 'the TCP connection is up';
    if (ever) return 'the TCP connection was up, then lost';
    if (failed > 0) {
      return `every TCP connection to it failed (${failed} tries): nothing listens there, or no route leads there from this host`;
    }
    return 'no TCP connection yet: the host does not answer (a wrong address, or a firewall)';
  }

  /** A refused CURVE key or a wrong server key otherwise looks like a coordinator that is not there. */
  private watchHandshake({ keyPair, serverPublicKey }: LinkCurve): void {
    this.handshake =
      `no CURVE handshake with the coordinator succeeded: is --server-key its public key ` +
      `(${serverPublicKey})?`;
    const events = this.socket.events;
    events.on('handshake', () => (this.handshake = ''));
    events.on('handshake:error:auth', () => {
      this.handshake =
        `the coordinator refused this worker's CURVE key ${keyPair.publicKey}: ` +
        "add this worker's .pub file to the coordinator's --authorized-keys";
      this.log(this.handshake);
    });
  }

  /** From Welcome on, messages of other runs are dropped. */
  joinRun(runId: string): void {
    this.runId = runId;
  }

  async send(body: ControlBody): Promise<void> {
    try {
      await this.socket.send(encodeControl({ runId: this.runId, body }));
    } catch (error) {
      throw new Error(
        `cannot send ${body.case} to the coordinator at ${this.endpoint}: ${(error as Error).message}`,
      );
    }
  }

  /** Best effort: tells the coordinator why this worker stops. Never throws. */
  async sendError(code: ErrorCode, message: string): Promise<void> {
    try {
      await this.send({ case: 'error', value: { code, message: message.slice(0, 4000) } });
    } catch {
      // The coordinator is gone; the exit status and stderr still tell the story.
    }
  }

  /**
   * The next valid message of this run. `waitingFor` names what we expect, for
   * the timeout's message.
   */
  async receive(waitingFor: string, timeoutMs = this.timeoutMs): Promise<ControlMessage> {
    const deadline = performance.now() + timeoutMs;
    let lastDrop = '';
    for (;;) {
      this.socket.receiveTimeout = Math.max(1, Math.ceil(deadline - performance.now()));
      let parts: Buffer[];
      try {
        parts = await this.receiveAfterTimeout();
      } catch (error) {
        if ((error as { code?: string }).code !== 'EAGAIN') throw error;
        throw new Error(
          `no message from the coordinator at ${this.endpoint} for ${(timeoutMs / 1000).toFixed(0)} s ` +
            `while waiting for ${waitingFor}; ${this.connectionState()}. Is it running ` +
            `(lorafleet train --workers N) and is --coordinator right?` +
            (this.handshake ? ` CURVE: ${this.handshake}.` : '') +
            (lastDrop ? ` Last frame dropped meanwhile: ${lastDrop}` : ''),
        );
      }
      const [frame, ...rest] = parts;
      if (frame === undefined || rest.length > 0) {
        lastDrop = `a ${parts.length}-part message`;
      } else {
        const decoded = decodeControl(frame);
        if (!decoded.ok) lastDrop = `a bad frame (${decoded.error.message})`;
        else if (this.runId !== UNASSIGNED_RUN && decoded.message.runId !== this.runId) {
          lastDrop = `a ${decoded.message.body.case} of run ${decoded.message.runId}, not ${this.runId}`;
        } else return decoded.message;
      }
      this.log(`dropped ${lastDrop}`);
    }
  }

  /**
   * A receive whose timeout fired gets one immediate second try: after a
   * micro-batch that blocked the event loop past the timeout, the timer runs
   * before the queued messages are read, and the coordinator's heartbeats
   * that arrived meanwhile (libzmq's I/O thread kept receiving) prove it alive.
   */
  private async receiveAfterTimeout(): Promise<Buffer[]> {
    try {
      return await this.socket.receive();
    } catch (error) {
      if ((error as { code?: string }).code !== 'EAGAIN') throw error;
      this.socket.receiveTimeout = 0;
      return await this.socket.receive();
    }
  }

  close(): void {
    this.socket.close();
  }
}
