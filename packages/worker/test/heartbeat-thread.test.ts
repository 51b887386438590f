// The heartbeat thread against a ROUTER set up the way the coordinator sets
// its own up (CURVE server, authenticator with the authorized worker keys):
// it keeps beating while this thread is blocked as a micro-batch blocks it,
// its heartbeats carry the progress this thread shares, and its socket is
// admitted only with an authorized key. The thread runs the built JavaScript
// (dist/), as `pnpm test` builds first.
import { afterEach, describe, expect, it } from 'vitest';
import { Router } from 'zeromq';
import {
  CurveAuthenticator,
  type CurveKeyPair,
  curveServerOptions,
  generateKeyPair,
} from '@lorafleet/collective';
import { type Heartbeat, decodeControl } from '@lorafleet/protocol';
import { HeartbeatThread } from '../src/heartbeat.js';
import { ComputeProgress } from '../src/progress.js';

const closers: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const server = generateKeyPair();
const worker = generateKeyPair();

async function coordinator(authorized: string[]) {
  const refusals: string[] = [];
  const auth = await CurveAuthenticator.acquire({
    keys: authorized,
    onRefusal: ({ reason }) => refusals.push(reason),
  });
  const router = new Router({ linger: 0, ...curveServerOptions(server, auth.domain) });
  closers.push(
    () => auth.close(),
    () => router.close(),
  );
  await router.bind('tcp://127.0.0.1:*');
  return { router, endpoint: router.lastEndpoint!, refusals };
}

function beat(endpoint: string, keyPair: CurveKeyPair, progress: ComputeProgress) {
  const thread = new HeartbeatThread(
    {
      endpoint,
      runId: 'run-hb',
      heartbeatId: 'hb-42',
      intervalMs: 200,
      curve: { keyPair, serverPublicKey: server.publicKey },
    },
    progress,
    () => undefined,
  );
  closers.push(() => thread.close());
  return thread;
}

async function nextBeat(router: Router): Promise<Heartbeat> {
  const [, frame] = await router.receive();
  const decoded = decodeControl(frame!);
  if (!decoded.ok || decoded.message.body.case !== 'heartbeat') {
    throw new Error(`expected a heartbeat, got ${decoded.ok ? decoded.message.body.case : 'junk'}`);
  }
  expect(decoded.message.runId).toBe('run-hb');
  return decoded.message.body.value;
}

describe('the heartbeat thread', () => {
  it('beats over CURVE while this thread is blocked in a micro-batch, reporting its stalled progress', async () => {
    const { router, endpoint } = await coordinator([worker.publicKey]);
    const progress = new ComputeProgress();
    progress.state = 'idle';
    progress.stepsDone = 4;
    beat(endpoint, worker, progress);
    expect(await nextBeat(router)).toMatchObject({
      state: 'idle',
      stepsDone: 4,
      heartbeatId: 'hb-42',
      progress: 0,
      stalledMs: 0,
      computeLimitMs: 0,
      warmingUp: false,
    });
    progress.state = 'computing';
    progress.bump(60_000, true);
    const blockedAt = Date.now();
    // Like a micro-batch: this event loop does nothing for 1.5 s.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500);
    const unblockedAt = Date.now();
    progress.bump(0);
    // The heartbeats sent meanwhile waited in the socket's queue.
    const during: Heartbeat[] = [];
    for (;;) {
      const b = await nextBeat(router);
      if (b.progress === 2) break;
      if (b.sentAtMs > blockedAt) during.push(b);
    }
    expect(during.length).toBeGreaterThanOrEqual(4);
    expect(during.every((b) => b.sentAtMs <= unblockedAt)).toBe(true);
    for (const b of during) {
      expect(b).toMatchObject({ state: 'computing', progress: 1, computeLimitMs: 60_000 });
      expect(b.warmingUp).toBe(true);
      // Stalled since the bump, as the thread's own clock sees it.
      expect(Math.abs(b.stalledMs - (b.sentAtMs - blockedAt))).toBeLessThan(50);
    }
    expect(during.at(-1)!.stalledMs).toBeGreaterThan(1000);
  });

  it('is refused, like the main link, when its key is not authorized', async () => {
    const { router, endpoint, refusals } = await coordinator([generateKeyPair().publicKey]);
    beat(endpoint, worker, new ComputeProgress());
    router.receiveTimeout = 1500;
    await expect(router.receive()).rejects.toThrow();
    expect(refusals.join('\n')).toContain(worker.publicKey);
  });
});
