import { Pull, Push } from 'zeromq';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { encodeChunk, type Chunk, type ChunkFrames } from '@lorafleet/protocol';
import { RingAllReduce, RingError } from '../src/index.js';
import { Outbox } from '../src/links.js';
import {
  closeAll,
  expectBitwiseIdentical,
  expectClose,
  formRing,
  inputs,
  naiveSum,
} from './helpers.js';

const RUN = 'fault-test';
let open: RingAllReduce[] = [];
afterEach(() => {
  closeAll(open);
  open = [];
});

function frame(overrides: Partial<Chunk>): ChunkFrames {
  const chunk = {
    runId: RUN,
    generation: 0,
    step: 5,
    phase: 'reduce-scatter' as const,
    index: 0,
    senderRank: 0,
    dtype: 'f32' as const,
    segment: 0,
    offset: 0,
    payload: new Uint8Array(new Float32Array(4).fill(1e6).buffer),
    ...overrides,
  };
  return encodeChunk(chunk);
}

describe('stale and foreign frames', () => {
  it('(ZeroMQ transport) are dropped with a log line, and the reduction still completes correctly', async () => {
    const lines: string[] = [];
    // ZeroMQ's PULL takes frames from any pusher (the tcp transport's case is below).
    const rings = (open = await formRing(3, { log: (line) => lines.push(line), transport: 'zmq' }));
    const intruder = new Push({ linger: 0 });
    intruder.connect(rings[1]!.endpoint);
    // Rank 1 hears from rank 0: forge frames that look like rank 0's, but for the wrong exchange.
    const junk = [
      frame({ step: 4 }), // the previous step
      frame({ runId: 'another-run' }),
      frame({ phase: 'all-gather' }),
      frame({ index: 1 }),
      frame({ senderRank: 2 }), // the right exchange, the wrong sender
      frame({ generation: 1 }), // the right exchange of another ring
      [Buffer.from([1, 2, 3, 4, 5])], // not a chunk at all
      [frame({})[0]], // a header without its payload
    ];
    const sent = inputs(3, 1001, 42);
    const buffers = sent.map((b) => Float32Array.from(b));
    const reduce = (r: number) => rings[r]!.allReduce(buffers[r]!, { step: 5, runId: RUN });
    // Ranks 1 and 2 start; rank 1 waits for rank 0 and meets the junk first.
    const started = [reduce(1), reduce(2)];
    for (const bytes of junk) await intruder.send(bytes);
    await vi.waitFor(() => expect(lines.length).toBe(junk.length), { timeout: 4000 });
    await Promise.all([reduce(0), ...started]);
    intruder.close();

    expectBitwiseIdentical(buffers);
    expectClose(buffers[0]!, naiveSum(sent), sent, 3 * 2 ** -24);
    const dropped = lines.filter((l) => l.startsWith('rank 1: dropped'));
    expect(dropped).toHaveLength(junk.length);
    expect(dropped[0]).toContain('run "fault-test" step 4 reduce-scatter #0 from rank 0');
    expect(dropped.at(-1)).toContain('undecodable');
  });
});

describe('a peer that never sends', () => {
  it('makes allReduce reject after the timeout, naming the peer', async () => {
    const rings = (open = await formRing(3, { timeoutMs: 300 }));
    const started = performance.now();
    // Rank 2 never calls allReduce.
    const [r0, r1] = await Promise.allSettled(
      rings
        .slice(0, 2)
        .map((ring) => ring.allReduce(new Float32Array(100), { step: 0, runId: RUN })),
    );
    const elapsed = performance.now() - started;
    expect(r0?.status).toBe('rejected');
    const error = (r0 as PromiseRejectedResult).reason as RingError;
    expect(error).toBeInstanceOf(RingError);
    expect(error.message).toContain(
      'rank 0: timed out after 300 ms waiting for run "fault-test" step 0',
    );
    expect(error.message).toContain(`from rank 2 (${rings[2]!.endpoint}`);
    expect(error.peer).toEqual({ rank: 2, endpoint: rings[2]!.endpoint });
    expect(r1?.status).toBe('rejected'); // rank 1 waits on rank 0, which waits on rank 2
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(3000);

    // A failed all-reduce leaves frames in flight: the ring refuses to be reused.
    await expect(
      rings[0]!.allReduce(new Float32Array(100), { step: 1, runId: RUN }),
    ).rejects.toThrow(/the ring is broken by an earlier failure .* close it and form a new one/);
  });

  it('names an endpoint nobody listens on', async () => {
    const ring = await RingAllReduce.bind({
      rank: 0,
      worldSize: 2,
      listen: 'tcp://127.0.0.1:*',
      timeoutMs: 200,
    });
    open = [ring];
    const dead = 'tcp://127.0.0.1:9'; // discard port: nothing of ours there
    ring.connect([ring.endpoint, dead]);
    await expect(ring.allReduce(new Float32Array(8), { step: 0, runId: RUN })).rejects.toThrow(
      `from rank 1 (${dead}`,
    );
  });
});

describe('a peer that never receives', () => {
  it('makes sends time out once its queues are full, naming the peer', async () => {
    const deaf = new Pull({ receiveHighWaterMark: 1 });
    await deaf.bind('tcp://127.0.0.1:*');
    const endpoint = deaf.lastEndpoint!;
    const push = new Push({ sendHighWaterMark: 1, sendTimeout: 200, linger: 0 });
    push.connect(endpoint);
    const outbox = new Outbox(push, 0, { rank: 1, endpoint }, 200);
    const frame = Buffer.alloc(4 << 20);
    try {
      // Socket buffers absorb a few frames; a deaf peer cannot absorb 64 MiB.
      const sending = (async () => {
        for (let i = 0; i < 16; i++) await outbox.send([frame], `frame ${i}`);
      })();
      await expect(sending).rejects.toThrow(
        new RegExp(`rank 0: timed out after 200 ms sending frame \\d+ to rank 1 \\(${endpoint}\\)`),
      );
    } finally {
      push.close();
      deaf.close();
    }
  });
});

describe('misuse', () => {
  it('is refused with a message that says what to do', async () => {
    const ring = await RingAllReduce.bind({ rank: 1, worldSize: 2, listen: 'tcp://127.0.0.1:*' });
    open = [ring];
    await expect(ring.allReduce(new Float32Array(1), { step: 0, runId: RUN })).rejects.toThrow(
      /before connect/,
    );
    expect(() => ring.connect(['a'])).toThrow(/1 endpoints for a ring of 2/);
    await expect(ring.allReduce(new Float32Array(1), { step: -1, runId: RUN })).rejects.toThrow(
      /step -1/,
    );
    ring.close();
    await expect(ring.allReduce(new Float32Array(1), { step: 0, runId: RUN })).rejects.toThrow(
      /closed ring/,
    );
    await expect(
      RingAllReduce.bind({ rank: 2, worldSize: 2, listen: 'tcp://127.0.0.1:*' }),
    ).rejects.toThrow(/rank 2 must be/);
  });
});
