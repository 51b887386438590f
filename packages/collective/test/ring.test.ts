import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RingAllReduce } from '../src/index.js';
import {
  closeAll,
  expectBitwiseIdentical,
  expectClose,
  formRing,
  inputs,
  naiveSum,
} from './helpers.js';

const RUN = 'ring-test';
let open: RingAllReduce[] = [];
afterEach(() => {
  closeAll(open);
  open = [];
});

// Two ranks exchange whole buffers (algorithm 'auto'); 'ring' runs them through the ring.
describe.each([
  [1, 'auto'],
  [2, 'auto'],
  [2, 'ring'],
  [3, 'auto'],
  [4, 'auto'],
  [5, 'auto'],
] as const)('a ring of %i in one process, over tcp (algorithm %s)', (n, algorithm) => {
  const lengths = [...new Set([0, 1, 3, Math.max(n - 1, 0), 1000, 1001, 100_003])];

  it(`sums lengths ${lengths.join(', ')} in place, bitwise identical on every rank`, async () => {
    const rings = (open = await formRing(n, { algorithm }));
    let step = 0;
    for (const length of lengths) {
      const sent = inputs(n, length, 1000 * n + length);
      const buffers = sent.map((b) => Float32Array.from(b));
      await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r]!, { step, runId: RUN })));
      step += 1;
      expectBitwiseIdentical(buffers);
      expectClose(buffers[0]!, naiveSum(sent), sent, n * 2 ** -24);
    }
  });
});

describe('over ipc', () => {
  it('a ring of 3 on unix sockets sums the same way', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lorafleet-ring-'));
    try {
      const rings = (open = await Promise.all(
        [0, 1, 2].map((rank) =>
          RingAllReduce.bind({ rank, worldSize: 3, listen: `ipc://${join(dir, `rank-${rank}`)}` }),
        ),
      ));
      for (const ring of rings) ring.connect(rings.map((r) => r.endpoint));
      const sent = inputs(3, 1001, 3);
      const buffers = sent.map((b) => Float32Array.from(b));
      await Promise.all(
        rings.map((ring, r) => ring.allReduce(buffers[r]!, { step: 0, runId: RUN })),
      );
      expectBitwiseIdentical(buffers);
      expectClose(buffers[0]!, naiveSum(sent), sent, 3 * 2 ** -24);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('wire and frames', () => {
  it('splits segments into bounded frames (64-byte frames, odd lengths)', async () => {
    const rings = (open = await formRing(3, { frameBytes: 64 }));
    for (const [step, length] of [1001, 17, 2].entries()) {
      const sent = inputs(3, length, step);
      const buffers = sent.map((b) => Float32Array.from(b));
      await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r]!, { step, runId: RUN })));
      expectBitwiseIdentical(buffers);
      expectClose(buffers[0]!, naiveSum(sent), sent, 3 * 2 ** -24);
    }
  });

  it.each([
    ['f32', 5],
    ['bf16', 3],
  ] as const)(
    'pipelines many pieces (%s, n = %i, 40-byte pieces, payload checksums on)',
    async (wireDtype, n) => {
      const rings = (open = await formRing(n, { frameBytes: 40, checksum: true }));
      const sent = inputs(n, 997, 11).map((b) => b.map((x) => x / 1000));
      const buffers = sent.map((b) => Float32Array.from(b));
      await Promise.all(
        rings.map((ring, r) => ring.allReduce(buffers[r]!, { step: 3, runId: RUN, wireDtype })),
      );
      expectBitwiseIdentical(buffers);
      expectClose(
        buffers[0]!,
        naiveSum(sent),
        sent,
        n * (wireDtype === 'f32' ? 2 ** -24 : 2 ** -7),
      );
    },
  );

  it.each([
    ['f16', 4, 2 ** -10],
    ['bf16', 4, 2 ** -7],
    ['f16', 2, 2 ** -10],
    ['bf16', 2, 2 ** -7],
  ] as const)(
    '%s on the wire: within its tolerance, still bitwise identical',
    async (wireDtype, n, ulp) => {
      const rings = (open = await formRing(n));
      const sent = inputs(n, 1001, 7).map((b) => b.map((x) => x / 1000)); // stay inside fp16's range
      const buffers = sent.map((b) => Float32Array.from(b));
      await Promise.all(
        rings.map((ring, r) => ring.allReduce(buffers[r]!, { step: 1, runId: RUN, wireDtype })),
      );
      expectBitwiseIdentical(buffers);
      // Each of the n - 1 partial sums and the final value round once to the wire type (two
      // ranks: each one's contribution and the sum).
      expectClose(buffers[0]!, naiveSum(sent), sent, n * ulp);
    },
  );

  it('two ranks take the exchange up to one piece, the ring beyond, and agree on it', async () => {
    const lines: string[] = [];
    const rings = (open = await formRing(2, { frameBytes: 400, log: (l) => lines.push(l) }));
    for (const [step, length] of [100, 101, 5000].entries()) {
      const sent = inputs(2, length, step);
      const buffers = sent.map((b) => Float32Array.from(b));
      await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r]!, { step, runId: RUN })));
      expectBitwiseIdentical(buffers);
      expectClose(buffers[0]!, naiveSum(sent), sent, 2 * 2 ** -24);
    }
    expect(lines).toEqual([]); // no frame of one algorithm reached a rank running the other
  });

  it("refuses algorithm 'exchange' for other than two ranks", async () => {
    await expect(
      RingAllReduce.bind({
        rank: 0,
        worldSize: 3,
        listen: 'tcp://127.0.0.1:*',
        algorithm: 'exchange',
      }),
    ).rejects.toThrow(/algorithm 'exchange' takes two ranks, not 3/);
  });

  it('a single rank leaves the buffer untouched and needs no sockets', async () => {
    const ring = await RingAllReduce.bind({ rank: 0, worldSize: 1, listen: 'tcp://127.0.0.1:*' });
    ring.connect([ring.endpoint]);
    const buffer = new Float32Array([1.5, -2]);
    await ring.allReduce(buffer, { step: 0, runId: RUN, wireDtype: 'f16' });
    expect(Array.from(buffer)).toEqual([1.5, -2]);
    ring.close();
  });

  it('refuses to run when ranks disagree on the wire dtype, saying so', async () => {
    const rings = (open = await formRing(2, { timeoutMs: 300, log: () => undefined }));
    const runs = rings.map((ring, r) =>
      ring.allReduce(new Float32Array(10), {
        step: 0,
        runId: RUN,
        wireDtype: r === 0 ? 'f32' : 'f16',
      }),
    );
    const results = await Promise.allSettled(runs);
    const reasons = results.map((r) => (r.status === 'rejected' ? String(r.reason) : ''));
    expect(reasons[0]).toMatch(
      /in f16 where this rank expects f32 \(every rank must pass the same wireDtype\)/,
    );
  });
});
