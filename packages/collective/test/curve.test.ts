// CURVE on both planes, on real tcp sockets: key files, the ZAP authenticator
// (does libzmq really ask it?), a CURVE ring against the plain ring, and peers
// whose keys are not admitted.
import { fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Dealer, Push, Router, type Pull } from 'zeromq';
import { encodeChunk, encodeFloats } from '@lorafleet/protocol';
import {
  CurveAuthenticator,
  RingAllReduce,
  curveClientOptions,
  curveServerOptions,
  generateKeyPair,
  isZ85Key,
  readKeyPair,
  readPublicKeys,
  reduceScatterStep,
  resolvePublicKey,
  segments,
  writeKeyPair,
  type CurveKeyPair,
  type ZapRefusal,
} from '../src/index.js';
import { ensureBuilt } from './build.js';
import { closeAll, expectBitwiseIdentical, formRing, inputs } from './helpers.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'lorafleet-curve-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

describe('keys and key files', () => {
  it('makes Z85 key pairs and tells keys from other strings', () => {
    const { publicKey, secretKey } = generateKeyPair();
    expect(isZ85Key(publicKey) && isZ85Key(secretKey)).toBe(true);
    expect(publicKey).not.toBe(secretKey);
    expect(isZ85Key(publicKey.slice(1))).toBe(false);
    expect(isZ85Key(`${publicKey.slice(1)}"`)).toBe(false); // not a Z85 character
    expect(isZ85Key('#'.repeat(40))).toBe(false); // each group overflows 32 bits
  });

  it('writes NAME.key (0600) and NAME.pub, reads them back, and never overwrites', () => {
    const out = join(dir, 'round-trip');
    const { keyPair, keyFile, publicFile } = writeKeyPair(out, 'w1');
    expect(keyFile).toBe(join(out, 'w1.key'));
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(readKeyPair(keyFile)).toEqual(keyPair);
    expect(readPublicKeys(publicFile)).toEqual([keyPair.publicKey]);
    expect(readPublicKeys(keyFile)).toEqual([keyPair.publicKey]);
    const second = writeKeyPair(out, 'w2').keyPair;
    expect(readPublicKeys(out)).toEqual([keyPair.publicKey, second.publicKey]); // *.pub only
    expect(resolvePublicKey(publicFile)).toBe(keyPair.publicKey);
    expect(resolvePublicKey(second.publicKey)).toBe(second.publicKey);
    expect(() => writeKeyPair(out, 'w1')).toThrow(/w1\.key exists; refusing to overwrite/);
    expect(() => writeKeyPair(out, '../escape')).toThrow(/key name "..\/escape"/);
  });

  it('says which file and line is wrong', () => {
    const bad = join(dir, 'bad');
    mkdirSync(bad);
    const file = (name: string, text: string) => {
      writeFileSync(join(bad, name), text);
      return join(bad, name);
    };
    const pub = file('a.pub', `# comment\n\npublic-key = "${generateKeyPair().publicKey}"\n`);
    expect(() => readKeyPair(pub)).toThrow(/a\.pub is not a CURVE key pair: .*is it a \.pub file/);
    const typo = file('b.key', 'public-key = "abc"\n');
    expect(() => readKeyPair(typo)).toThrow(/b\.key:1: public-key is not a CURVE key/);
    const junk = file('c.key', '# ok\nprivate = "x"\n');
    expect(() => readKeyPair(junk)).toThrow(/c\.key:2: expected public-key = /);
    expect(() => readPublicKeys(join(bad, 'missing.pub'))).toThrow(
      /cannot read CURVE public keys from .*missing\.pub/,
    );
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    expect(() => readPublicKeys(empty)).toThrow(/holds no \.pub files/);
    expect(() => resolvePublicKey('not-a-key')).toThrow(/not-a-key is neither a CURVE public key/);
  });
});

/** A CURVE server socket with its own authenticator, torn down after the test. */
async function curveServer<S extends Router | Pull>(
  make: (options: object) => S,
  serverKeys: CurveKeyPair,
  admitted: string[],
  refusals: ZapRefusal[] = [],
): Promise<{ socket: S; endpoint: string; auth: CurveAuthenticator }> {
  const auth = await CurveAuthenticator.acquire({
    keys: admitted,
    onRefusal: (r) => refusals.push(r),
  });
  const socket = make({ ...curveServerOptions(serverKeys, auth.domain), linger: 0 });
  cleanups.push(() => {
    socket.close();
    auth.close();
  });
  await socket.bind('tcp://127.0.0.1:*');
  return { socket, endpoint: socket.lastEndpoint!, auth };
}

function dealer(keys: CurveKeyPair | undefined, serverKey: string, endpoint: string): Dealer {
  const socket = new Dealer({
    linger: 0,
    ...(keys && curveClientOptions(keys, serverKey)),
  });
  cleanups.push(() => socket.close());
  socket.connect(endpoint);
  return socket;
}

/** The next message, or undefined after `ms`. */
async function receiveWithin(socket: Router | Pull, ms: number): Promise<Buffer[] | undefined> {
  socket.receiveTimeout = ms;
  try {
    return await socket.receive();
  } catch (error) {
    if ((error as { code?: string }).code === 'EAGAIN') return undefined;
    throw error;
  }
}

async function until(done: () => boolean, ms = 3000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!done() && performance.now() < deadline) await sleep(10);
}

describe('control plane: a ROUTER behind the authenticator', () => {
  const coordinator = generateKeyPair();
  const listed = generateKeyPair();
  const unlisted = generateKeyPair();

  it('admits a listed DEALER and refuses an unlisted one, reporting its key', async () => {
    const refusals: ZapRefusal[] = [];
    const router = (o: object) => new Router(o);
    const { socket, endpoint } = await curveServer(
      router,
      coordinator,
      [listed.publicKey],
      refusals,
    );

    await dealer(unlisted, coordinator.publicKey, endpoint).send('from unlisted');
    await dealer(listed, coordinator.publicKey, endpoint).send('from listed');
    const [, body] = (await receiveWithin(socket, 3000)) ?? [];
    expect(body?.toString()).toBe('from listed');
    expect(await receiveWithin(socket, 300)).toBeUndefined();
    await until(() => refusals.length > 0);
    expect(refusals[0]).toMatchObject({ mechanism: 'CURVE', publicKey: unlisted.publicKey });
    expect(refusals[0]!.reason).toMatch(/^refused 127\.0\.0\.1: CURVE key .* is not admitted$/);
  });

  it('refuses a plain (NULL) client, a client that trusts another server key, and revoked keys', async () => {
    const refusals: ZapRefusal[] = [];
    const router = (o: object) => new Router(o);
    const { socket, endpoint, auth } = await curveServer(
      router,
      coordinator,
      [listed.publicKey],
      refusals,
    );
    await dealer(undefined, '', endpoint).send('plain');
    await dealer(listed, unlisted.publicKey, endpoint).send('wrong server key');
    expect(await receiveWithin(socket, 500)).toBeUndefined();

    auth.revoke(listed.publicKey);
    await dealer(listed, coordinator.publicKey, endpoint).send('revoked');
    expect(await receiveWithin(socket, 500)).toBeUndefined();
    expect(refusals.map((r) => r.publicKey)).toContain(listed.publicKey);

    auth.allow(listed.publicKey);
    await dealer(listed, coordinator.publicKey, endpoint).send('allowed again');
    expect((await receiveWithin(socket, 3000))?.[1]?.toString()).toBe('allowed again');
  });

  it('keeps each server socket to its own keys, and fails closed once its authenticator is gone', async () => {
    const other = generateKeyPair();
    const router = (o: object) => new Router(o);
    const a = await curveServer(router, coordinator, [listed.publicKey], []);
    const b = await curveServer(router, other, [unlisted.publicKey], []);
    await dealer(listed, other.publicKey, b.endpoint).send('listed at a, not at b');
    expect(await receiveWithin(b.socket, 500)).toBeUndefined();

    // Without a ZAP policy (and with no handler at all once the last one closes) nothing gets in.
    a.auth.close();
    b.auth.close();
    await dealer(listed, coordinator.publicKey, a.endpoint).send('no authenticator');
    expect(await receiveWithin(a.socket, 500)).toBeUndefined();
  });
});

describe('data plane: a CURVE ring', () => {
  const RUN = 'curve-test';

  function ringKeys(n: number): { pairs: CurveKeyPair[]; publicKeys: string[] } {
    const pairs = Array.from({ length: n }, generateKeyPair);
    return { pairs, publicKeys: pairs.map((p) => p.publicKey) };
  }

  async function curveRing(n: number, log: (line: string) => void = () => undefined) {
    const { pairs, publicKeys } = ringKeys(n);
    const rings = await Promise.all(
      pairs.map((keyPair, rank) =>
        RingAllReduce.bind({
          rank,
          worldSize: n,
          listen: 'tcp://127.0.0.1:*',
          timeoutMs: 5000,
          log,
          curve: { keyPair, publicKeys },
        }),
      ),
    );
    cleanups.push(() => closeAll(rings));
    return { rings, publicKeys };
  }

  it('all-reduces 3 ranks to the plain ring result, bit for bit', async () => {
    const sent = inputs(3, 100_003, 42);
    const results: Float32Array[][] = [];
    const plain = await formRing(3);
    cleanups.push(() => closeAll(plain));
    for (const rings of [plain, (await curveRing(3)).rings]) {
      rings.forEach((ring) => ring.connect(rings.map((r) => r.endpoint)));
      const buffers = sent.map((b) => Float32Array.from(b));
      await Promise.all(
        rings.map((ring, r) => ring.allReduce(buffers[r]!, { step: 0, runId: RUN })),
      );
      expectBitwiseIdentical(buffers);
      results.push(buffers);
    }
    expectBitwiseIdentical([results[0]![0]!, results[1]![0]!]);
  });

  it('checks the keys it is given', async () => {
    const { pairs, publicKeys } = ringKeys(2);
    const bind = (curve: { keyPair: CurveKeyPair; publicKeys: string[] }) =>
      RingAllReduce.bind({ rank: 0, worldSize: 2, listen: 'tcp://127.0.0.1:*', curve });
    await expect(bind({ keyPair: pairs[0]!, publicKeys: publicKeys.slice(1) })).rejects.toThrow(
      /curve.publicKeys has 1 keys for a ring of 2/,
    );
    await expect(bind({ keyPair: pairs[1]!, publicKeys })).rejects.toThrow(
      /curve.keyPair must be rank 0's/,
    );
  });

  /**
   * A peer that is not the left neighbour pushes a frame rank 1 would take as rank 0's
   * first reduce-scatter frame (all 1000s), before rank 0 sends anything.
   */
  async function forge(endpoint: string, keys?: CurveKeyPair, serverKey?: string) {
    const length = 1000;
    const { send } = reduceScatterStep(0, 2, 0);
    const span = segments(length, 2)[send]!;
    const frame = encodeChunk({
      runId: RUN,
      generation: 0,
      step: 0,
      phase: 'reduce-scatter',
      index: 0,
      senderRank: 0,
      dtype: 'f32',
      segment: send,
      offset: 0,
      payload: encodeFloats(new Float32Array(span.length).fill(1000), 'f32'),
    });
    const rogue = new Push({
      linger: 0,
      ...(keys && serverKey && curveClientOptions(keys, serverKey)),
    });
    cleanups.push(() => rogue.close());
    // Wait until the handshake succeeded or the server turned the stranger away.
    const handshake = new Promise((resolve) => {
      for (const event of ['handshake', 'handshake:error:auth', 'disconnect'] as const)
        rogue.events.on(event, resolve);
    });
    rogue.connect(endpoint);
    await rogue.send(frame);
    await Promise.race([handshake, sleep(3000)]);
    await sleep(100); // for the frame to cross, were it admitted
    return length;
  }

  /**
   * A ring of 2 where, before the ranks connect, a stranger pushes rank 1 a forged frame; then
   * one all-reduce of 1s and 2s. Had the frame got in, rank 1 would have summed it (values past
   * 1000) or, if rank 0's frame came first, dropped it as a duplicate (a log line).
   */
  async function strangerFeeds(curve: boolean, stranger: CurveKeyPair | undefined) {
    const lines: string[] = [];
    const log = (line: string) => lines.push(line);
    const { rings, publicKeys } = curve
      ? await curveRing(2, log)
      : { rings: await bindPlain(2, log), publicKeys: [] };
    // The stranger knows rank 1's public key (it is public); only its own key is wrong.
    const length = await forge(rings[1]!.endpoint, stranger, publicKeys[1]);
    rings.forEach((ring) => ring.connect(rings.map((r) => r.endpoint)));
    const buffers = [new Float32Array(length).fill(1), new Float32Array(length).fill(2)];
    await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r]!, { step: 0, runId: RUN })));
    return {
      gotIn: buffers[1]!.some((x) => x > 1000) || lines.some((l) => l.includes('dropped')),
      log: lines.join('\n'),
    };
  }

  async function bindPlain(n: number, log: (line: string) => void) {
    const rings = await Promise.all(
      Array.from({ length: n }, (_, rank) =>
        // ZeroMQ, as with CURVE: the control differs from the CURVE ring only in CURVE.
        RingAllReduce.bind({
          rank,
          worldSize: n,
          listen: 'tcp://127.0.0.1:*',
          log,
          transport: 'zmq',
        }),
      ),
    );
    cleanups.push(() => closeAll(rings));
    return rings;
  }

  it('never lets a peer with an unknown key feed a rank, and names the key', async () => {
    const stranger = generateKeyPair();
    const { gotIn, log } = await strangerFeeds(true, stranger);
    expect(gotIn).toBe(false);
    expect(log).toContain(
      `rank 1: refused 127.0.0.1: CURVE key ${stranger.publicKey} is not admitted (only rank 0's key is)`,
    );
  });

  it('never lets a plain (NULL) peer feed a rank', async () => {
    // libzmq turns the mismatched mechanism away itself, before asking the authenticator.
    expect((await strangerFeeds(true, undefined)).gotIn).toBe(false);
  });

  it('(the control) on a plain ring the same forged frame gets in', async () => {
    expect((await strangerFeeds(false, undefined)).gotIn).toBe(true);
  });
});

describe('a CURVE ring of 3 processes', () => {
  beforeAll(() => ensureBuilt(), 120_000);

  it('all-reduces with one ZAP handler per process', async () => {
    const script = join(import.meta.dirname, 'fixtures', 'rank.mjs');
    const pairs = Array.from({ length: 3 }, generateKeyPair);
    const publicKeys = pairs.map((p) => p.publicKey);
    const children = pairs.map(() =>
      fork(script, [], { serialization: 'advanced', stdio: 'pipe', execArgv: [] }),
    );
    cleanups.push(() => children.forEach((c) => c.kill()));
    let next = 0;
    const call = (i: number, type: string, args: object) =>
      new Promise<{ ok: boolean; error?: string; endpoint?: string; buffer?: Float32Array }>(
        (resolve) => {
          const id = next++;
          const child = children[i]!;
          child.on('message', (m: { id: number; ok: boolean }) => m.id === id && resolve(m));
          child.send({ id, type, ...args });
        },
      );
    const bound = await Promise.all(
      pairs.map((keyPair, rank) =>
        call(rank, 'bind', { rank, worldSize: 3, options: { curve: { keyPair, publicKeys } } }),
      ),
    );
    expect(bound.map((b) => b.error)).toEqual([undefined, undefined, undefined]);
    const endpoints = bound.map((b) => b.endpoint!);
    await Promise.all(pairs.map((_, i) => call(i, 'connect', { endpoints })));
    const sent = inputs(3, 10_001, 9);
    const replies = await Promise.all(
      sent.map((buffer, i) => call(i, 'reduce', { buffer, step: 0, runId: 'curve-processes' })),
    );
    expect(replies.map((r) => r.error)).toEqual([undefined, undefined, undefined]);
    expectBitwiseIdentical(replies.map((r) => r.buffer!));
    await Promise.all(pairs.map((_, i) => call(i, 'close', {})));
  });
});
