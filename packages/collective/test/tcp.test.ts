// The tcp transport (the default without CURVE): the same sums as ZeroMQ's, bit for
// bit; back-pressure; strangers refused; stale and foreign frames dropped, injected
// by a real relay between two ranks.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Push } from 'zeromq';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { encodeChunk, type Chunk } from '@lorafleet/protocol';
import { RingAllReduce, generateKeyPair } from '../src/index.js';
import {
  closeAll,
  expectBitwiseIdentical,
  expectClose,
  formRing,
  inputs,
  naiveSum,
} from './helpers.js';

const RUN = 'tcp-test';
let open: RingAllReduce[] = [];
const cleanups: (() => void)[] = [];
afterEach(() => {
  closeAll(open);
  open = [];
  for (const c of cleanups.splice(0)) c();
});

async function reduceAll(
  rings: RingAllReduce[],
  sent: Float32Array[],
  wireDtype: 'f32' | 'bf16' = 'f32',
): Promise<Float32Array[]> {
  const buffers = sent.map((b) => Float32Array.from(b));
  await Promise.all(
    rings.map((ring, r) => ring.allReduce(buffers[r]!, { step: 1, runId: RUN, wireDtype })),
  );
  return buffers;
}

describe('the tcp transport', () => {
  it.each([
    ['f32', 3],
    ['bf16', 3],
    ['f32', 2],
    ['bf16', 2],
  ] as const)(
    'sums exactly as the ZeroMQ transport does (%s, %i ranks, many pieces)',
    async (wireDtype, n) => {
      const sent = inputs(n, 300_001, 9).map((b) => b.map((x) => x / 1000));
      // Two ranks: the exchange in many pieces (on ZeroMQ they leave as copies).
      const options = { frameBytes: 64 << 10, algorithm: n === 2 ? 'exchange' : 'auto' } as const;
      open = await formRing(n, { ...options, transport: 'tcp' });
      const tcp = await reduceAll(open, sent, wireDtype);
      closeAll(open);
      open = await formRing(n, { ...options, transport: 'zmq' });
      const zmq = await reduceAll(open, sent, wireDtype);
      expectBitwiseIdentical([...tcp, ...zmq]);
    },
  );

  it('holds a sender back when the receiver stops reading (1-piece queues), and still sums', async () => {
    const rings = (open = await formRing(2, { frameBytes: 4096, highWaterMark: 1 }));
    const sent = inputs(2, 1 << 20, 3);
    const buffers = sent.map((b) => Float32Array.from(b));
    // Rank 1 starts late: rank 0's pieces pile up against its paused socket meanwhile.
    const first = rings[0]!.allReduce(buffers[0]!, { step: 0, runId: RUN });
    await new Promise((resolve) => setTimeout(resolve, 200));
    await Promise.all([first, rings[1]!.allReduce(buffers[1]!, { step: 0, runId: RUN })]);
    expectBitwiseIdentical(buffers);
    expectClose(buffers[0]!, naiveSum(sent), sent, 2 * 2 ** -24);
    // A second call reuses the pooled receive buffers.
    const again = sent.map((b) => Float32Array.from(b));
    await Promise.all(rings.map((ring, r) => ring.allReduce(again[r]!, { step: 1, runId: RUN })));
    expectBitwiseIdentical([...again, buffers[0]!]);
  });

  it('refuses strangers and ZeroMQ peers at its endpoint, saying why, and sums on', async () => {
    const lines: string[] = [];
    const rings = (open = await formRing(2, { log: (line) => lines.push(line) }));
    const stranger = connect(Number(/:(\d+)$/.exec(rings[0]!.endpoint)![1]), '127.0.0.1');
    stranger.on('error', () => undefined);
    stranger.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    const zmq = new Push({ linger: 0 });
    zmq.connect(rings[0]!.endpoint);
    cleanups.push(() => (stranger.destroy(), zmq.close()));
    await vi.waitFor(() => expect(lines.length).toBe(2), { timeout: 4000 });
    expect(lines.join('\n')).toContain('rank 0: refused a ring connection');
    expect(lines.join('\n')).toContain('not a LoRA Fleet ring peer');
    expect(lines.join('\n')).toContain(
      'a ZeroMQ peer (every rank must use the same ring transport',
    );
    const sent = inputs(2, 1001, 4);
    expectBitwiseIdentical(await reduceAll(rings, sent));
  });

  it('ends a pending all-reduce at once when closed (as a worker does to drop a lost peer)', async () => {
    const rings = (open = await formRing(2, { timeoutMs: 20_000 }));
    const started = performance.now();
    // Rank 1 never takes part: rank 0 waits on it.
    const pending = rings[0]!.allReduce(new Float32Array(100), { step: 0, runId: RUN });
    setTimeout(() => rings[0]!.close(), 100);
    await expect(pending).rejects.toThrow(/rank 0: the ring was closed/);
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('cannot carry CURVE: a ring with keys and transport tcp is refused', async () => {
    const pairs = [generateKeyPair(), generateKeyPair()];
    await expect(
      RingAllReduce.bind({
        rank: 0,
        worldSize: 2,
        listen: 'tcp://127.0.0.1:*',
        transport: 'tcp',
        curve: { keyPair: pairs[0]!, publicKeys: pairs.map((p) => p.publicKey) },
      }),
    ).rejects.toThrow(
      /transport 'tcp' does not encrypt: a ring with curve keys must use transport 'zmq'/,
    );
  });
});

/** A tcp frame as the transport writes it: lengths, header, payload. */
function wire(overrides: Partial<Chunk>): Buffer {
  const [header, payload] = encodeChunk({
    runId: RUN,
    generation: 0,
    step: 5,
    phase: 'reduce-scatter',
    index: 0,
    senderRank: 0,
    dtype: 'f32',
    segment: 1,
    offset: 0,
    payload: new Uint8Array(new Float32Array(4).fill(1e6).buffer),
    ...overrides,
  });
  const lengths = Buffer.alloc(8);
  lengths.writeUInt32LE(header.length, 0);
  lengths.writeUInt32LE(payload.length, 4);
  return Buffer.concat([lengths, header, payload]);
}

/**
 * Listens where rank 1 will dial rank 0; passes everything through both ways, but writes
 * `junk` to rank 1 before any of rank 0's bytes.
 */
async function injectingRelay(upstream: string, junk: Buffer[]): Promise<Server> {
  const [, host, port] = /^tcp:\/\/(.+):(\d+)$/.exec(upstream)!;
  const server = createServer((down: Socket) => {
    for (const bytes of junk) down.write(bytes);
    const up = connect(Number(port), host!);
    down.pipe(up).pipe(down);
    for (const s of [up, down]) s.on('error', () => (up.destroy(), down.destroy()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/** Listens where rank 1 will dial rank 0; passes both ways, but rank 0's bytes only after `ms`. */
async function stallingRelay(upstream: string, ms: number): Promise<Server> {
  const [, host, port] = /^tcp:\/\/(.+):(\d+)$/.exec(upstream)!;
  const server = createServer((down: Socket) => {
    const up = connect(Number(port), host!);
    up.pause();
    down.pipe(up); // rank 1's hello
    setTimeout(() => up.pipe(down), ms);
    for (const s of [up, down]) s.on('error', () => (up.destroy(), down.destroy()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

describe('the two-rank exchange on the tcp transport', () => {
  it('adds into its buffer only what has left it (rank 0 held back while rank 1 sends)', async () => {
    const rings = (open = await formRing(2, { frameBytes: 64 << 10, algorithm: 'exchange' }));
    const relay = await stallingRelay(rings[0]!.endpoint, 300);
    cleanups.push(() => relay.close());
    const address = relay.address() as { port: number };
    rings[0]!.connect([rings[0]!.endpoint, rings[1]!.endpoint]);
    rings[1]!.connect([`tcp://127.0.0.1:${address.port}`, rings[1]!.endpoint]);
    // 32 MiB: more than the kernel's socket buffers hold, so rank 0's last pieces wait in
    // node's queue, as views of its buffer, while all of rank 1's arrive.
    const sent = inputs(2, 8 << 20, 5);
    const buffers = sent.map((b) => Float32Array.from(b));
    await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r]!, { step: 0, runId: RUN })));
    expectBitwiseIdentical(buffers);
    expectClose(buffers[0]!, naiveSum(sent), sent, 2 * 2 ** -24);
  });
});

describe('stale and foreign frames on the tcp transport', () => {
  // The junk names the exchange rank 1 waits for first (the two-rank exchange, or with
  // algorithm 'ring' the ring's first step), but of the wrong run, step, phase or generation,
  // or of the wrong length.
  it.each(['auto', 'ring'] as const)(
    'are dropped with a log line, and the reduction still completes correctly (algorithm %s)',
    async (algorithm) => {
      const lines: string[] = [];
      const rings = await Promise.all(
        [0, 1].map((rank) =>
          RingAllReduce.bind({
            rank,
            worldSize: 2,
            listen: 'tcp://127.0.0.1:*',
            timeoutMs: 5000,
            algorithm,
            log: (line) => lines.push(line),
          }),
        ),
      );
      open = rings;
      const phase = algorithm === 'auto' ? 'exchange' : 'reduce-scatter';
      const junk = [
        wire({ phase, step: 4 }), // the previous step
        wire({ phase, runId: 'another-run' }),
        wire({ phase: 'all-gather' }),
        wire({ phase, generation: 1 }), // the right exchange of another ring
        wire({ phase, segment: 0 }), // the right exchange, the wrong length (4 elements)
      ];
      const relay = await injectingRelay(rings[0]!.endpoint, junk);
      cleanups.push(() => relay.close());
      const address = relay.address() as { port: number };
      // Rank 1 dials rank 0 through the relay; rank 0 dials rank 1 directly.
      rings[0]!.connect([rings[0]!.endpoint, rings[1]!.endpoint]);
      rings[1]!.connect([`tcp://127.0.0.1:${address.port}`, rings[1]!.endpoint]);
      const sent = inputs(2, 1001, 42);
      const buffers = sent.map((b) => Float32Array.from(b));
      await Promise.all(
        rings.map((ring, r) => ring.allReduce(buffers[r]!, { step: 5, runId: RUN })),
      );
      expectBitwiseIdentical(buffers);
      expectClose(buffers[0]!, naiveSum(sent), sent, 2 * 2 ** -24);
      const dropped = lines.filter((l) => l.startsWith('rank 1: dropped'));
      expect(dropped).toHaveLength(junk.length);
      expect(dropped[0]).toContain(`run "tcp-test" step 4 ${phase} #0 from rank 0`);
      expect(dropped.at(-1)).toContain('do the ranks pass buffers of the same length');
    },
  );
});
