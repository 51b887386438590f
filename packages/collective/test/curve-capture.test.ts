// What an eavesdropper sees of a ring's traffic: an all-reduce of a buffer with a
// distinctive byte pattern, recorded off the wire, with CURVE on and (the control
// that shows the check can fail) off. Two recorders: tcpdump on the loopback
// interface (needs tcpdump and the right to capture: root or CAP_NET_RAW; skipped
// otherwise), and a TCP relay spliced into one link, which runs anywhere.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { RingAllReduce, generateKeyPair, type RingOptions } from '../src/index.js';
import { closeAll, expectBitwiseIdentical } from './helpers.js';

const PATTERN = Buffer.from('LoRA-fleet:tensor-bytes!'); // 6 float32s, none NaN
const NEEDLE = PATTERN.subarray(0, 16);
const ELEMENTS = 16_384; // 64 KiB per rank

/** Rank 0 holds the pattern over and over, the others zeros: every sum on the wire is the pattern. */
function patterned(rank: number): Float32Array {
  const bytes = Buffer.alloc(ELEMENTS * 4);
  if (rank === 0) for (let i = 0; i < bytes.length; i += PATTERN.length) PATTERN.copy(bytes, i);
  return new Float32Array(bytes.buffer, bytes.byteOffset, ELEMENTS);
}

async function bindRing(n: number, curve: boolean): Promise<RingAllReduce[]> {
  const pairs = Array.from({ length: n }, generateKeyPair);
  const publicKeys = pairs.map((p) => p.publicKey);
  const options = (rank: number): RingOptions => ({
    rank,
    worldSize: n,
    listen: 'tcp://127.0.0.1:*',
    timeoutMs: 5000,
    // The control runs on ZeroMQ too (the default with CURVE): it differs only in CURVE.
    transport: 'zmq',
    ...(curve && { curve: { keyPair: pairs[rank]!, publicKeys } }),
  });
  return Promise.all(pairs.map((_, rank) => RingAllReduce.bind(options(rank))));
}

/** One all-reduce of the patterned buffers; `route` may rewrite where each rank connects. */
async function reduce(
  rings: RingAllReduce[],
  route: (endpoints: string[]) => string[] = (e) => e,
): Promise<void> {
  const endpoints = route(rings.map((r) => r.endpoint));
  for (const ring of rings) ring.connect(endpoints);
  const buffers = rings.map((_, rank) => patterned(rank));
  await Promise.all(rings.map((ring, r) => ring.allReduce(buffers[r]!, { step: 0, runId: 'cap' })));
  expectBitwiseIdentical([patterned(0), ...buffers]);
}

const port = (endpoint: string) => Number(/:(\d+)$/.exec(endpoint)![1]);

const captureDir = mkdtempSync(join(tmpdir(), 'lorafleet-capture-'));
afterAll(() => rmSync(captureDir, { recursive: true, force: true }));

/** Why tcpdump cannot record here, or undefined when it can. */
function tcpdumpMissing(): string | undefined {
  // -L opens the device (listing its link types): it fails without the right to capture.
  const probe = spawnSync('tcpdump', ['-i', 'lo', '-L'], {
    encoding: 'utf8',
    timeout: 5000,
  });
  if (probe.error) return `tcpdump is not installed (${probe.error.message})`;
  if (probe.status !== 0) return `tcpdump cannot capture on lo: ${probe.stderr.trim()}`;
  return undefined;
}

/** tcpdump on lo for the given ports, raw packets to a pcap file, until stop(). */
async function startTcpdump(ports: number[], file: string): Promise<() => Promise<Buffer>> {
  const filter = `tcp and (${ports.map((p) => `port ${p}`).join(' or ')})`;
  // -U: write each packet at once; -Z root: keep writing into our 0700 temp dir.
  const child = spawn('tcpdump', [
    '-i',
    'lo',
    '-n',
    '-U',
    '-s',
    '0',
    '-Z',
    'root',
    '-w',
    file,
    filter,
  ]);
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (data: Buffer) => {
      stderr += data.toString();
      if (stderr.includes('listening on')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`tcpdump exited (${code}): ${stderr}`)));
  });
  return async () => {
    const exited = new Promise((resolve) => child.on('exit', resolve));
    child.kill('SIGINT');
    await exited;
    return readFileSync(file);
  };
}

const whyNoTcpdump = tcpdumpMissing();

describe.skipIf(whyNoTcpdump !== undefined)('tcpdump on the loopback interface', () => {
  it.each([
    ['shows no plaintext tensor bytes with CURVE on', true],
    ['(the control) shows them with CURVE off', false],
  ])('an all-reduce of 3 ranks %s', async (_, curve) => {
    const rings = await bindRing(3, curve);
    try {
      const stop = await startTcpdump(
        rings.map((r) => port(r.endpoint)),
        join(captureDir, `${curve}.pcap`),
      );
      await reduce(rings);
      closeAll(rings);
      await sleep(200); // the last frames and the FINs
      const pcap = await stop();
      expect(pcap.length).toBeGreaterThan(3 * ELEMENTS * 4); // the traffic is all there
      expect(pcap.includes(curve ? 'CURVE' : 'NULL')).toBe(true); // ZMTP greetings' mechanism
      expect(pcap.includes(NEEDLE)).toBe(!curve);
    } finally {
      closeAll(rings);
    }
  });
});
if (whyNoTcpdump) console.warn(`curve-capture: skipping the tcpdump check: ${whyNoTcpdump}`);

/** A TCP relay to `target` that keeps every byte it forwards, both ways. */
async function startRelay(
  target: number,
): Promise<{ port: number; seen: Buffer[]; server: Server }> {
  const seen: Buffer[] = [];
  const server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: target });
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      from.on('data', (data: Buffer) => seen.push(data) && to.write(data));
      from.on('close', () => to.destroy());
      from.on('error', () => to.destroy());
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, seen, server };
}

describe('a recording relay on the link from rank 0 to rank 1', () => {
  it.each([
    ['carries no plaintext tensor bytes with CURVE on', true],
    ['(the control) carries them with CURVE off', false],
  ])('an all-reduce of 3 ranks %s', async (_, curve) => {
    const rings = await bindRing(3, curve);
    const relay = await startRelay(port(rings[1]!.endpoint));
    try {
      await reduce(rings, (e) =>
        e.map((endpoint, r) => (r === 1 ? `tcp://127.0.0.1:${relay.port}` : endpoint)),
      );
      const bytes = Buffer.concat(relay.seen);
      expect(bytes.length).toBeGreaterThan(ELEMENTS * 4 * (2 / 3)); // two segments crossed it
      expect(bytes.includes(curve ? 'CURVE' : 'NULL')).toBe(true);
      expect(bytes.includes(NEEDLE)).toBe(!curve);
    } finally {
      closeAll(rings);
      relay.server.close();
    }
  });
});
