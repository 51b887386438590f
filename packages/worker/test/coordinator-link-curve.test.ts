// The worker's control link as a CURVE client, against a ROUTER set up the way
// the coordinator sets its own up (CURVE server, authenticator with the
// authorized worker keys).
import { afterEach, describe, expect, it } from 'vitest';
import { Router } from 'zeromq';
import {
  CurveAuthenticator,
  curveServerOptions,
  generateKeyPair,
  type CurveKeyPair,
} from '@lorafleet/collective';
import { decodeControl, encodeControl } from '@lorafleet/protocol';
import { CoordinatorLink } from '../src/coordinator-link.js';

const closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers.splice(0).reverse()) close();
});

async function coordinator(keys: CurveKeyPair, authorized: string[]) {
  const auth = await CurveAuthenticator.acquire({ keys: authorized, onRefusal: () => undefined });
  const router = new Router({ linger: 0, ...curveServerOptions(keys, auth.domain) });
  closers.push(
    () => auth.close(),
    () => router.close(),
  );
  await router.bind('tcp://127.0.0.1:*');
  return { router, endpoint: router.lastEndpoint! };
}

function link(endpoint: string, keyPair: CurveKeyPair, serverPublicKey: string, lines: string[]) {
  const l = new CoordinatorLink(endpoint, 800, (line) => lines.push(line), {
    keyPair,
    serverPublicKey,
  });
  closers.push(() => l.close());
  return l;
}

describe('CoordinatorLink over CURVE', () => {
  const server = generateKeyPair();
  const worker = generateKeyPair();

  it('reaches a coordinator that authorizes its key, and hears back', async () => {
    const { router, endpoint } = await coordinator(server, [worker.publicKey]);
    const l = link(endpoint, worker, server.publicKey, []);
    await l.send({ case: 'error', value: { code: 'internal', message: 'over CURVE' } });
    const [identity, frame] = await router.receive();
    const decoded = decodeControl(frame!);
    expect(decoded.ok && decoded.message.body).toEqual({
      case: 'error',
      value: { code: 'internal', message: 'over CURVE' },
    });
    await router.send([
      identity!,
      encodeControl({ runId: 'r', body: { case: 'shutdown', value: { reason: 'done' } } }),
    ]);
    expect((await l.receive('a reply')).body.case).toBe('shutdown');
  });

  it('says the coordinator refused its key when it is not authorized', async () => {
    const { endpoint } = await coordinator(server, [generateKeyPair().publicKey]);
    const lines: string[] = [];
    const l = link(endpoint, worker, server.publicKey, lines);
    await expect(l.receive('Welcome')).rejects.toThrow(
      new RegExp(
        `CURVE: the coordinator refused this worker's CURVE key ${escape(worker.publicKey)}`,
      ),
    );
    expect(lines.join('\n')).toMatch(/--authorized-keys/);
  });

  it('asks about --server-key when no handshake succeeds', async () => {
    const { endpoint } = await coordinator(server, [worker.publicKey]);
    const l = link(endpoint, worker, generateKeyPair().publicKey, []);
    await expect(l.receive('Welcome')).rejects.toThrow(/is --server-key its public key/);
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
