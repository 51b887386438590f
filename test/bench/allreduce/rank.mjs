// One benchmark process, forked by run.mjs and driven over the fork IPC channel.
// It plays either a ring rank (the built @lorafleet/collective, as a worker runs
// it) or one end of a raw zeromq.js PUSH/PULL pair (the transport's own limit).
// Every timing is taken here, in the process that does the work.
import { createRequire } from 'node:module';
import { setImmediate } from 'node:timers';
import { Buffer } from 'node:buffer';
import { URL, pathToFileURL } from 'node:url';

const collective = new URL('../../../packages/collective/', import.meta.url);
const { RingAllReduce } = await import(new URL('dist/src/index.js', collective).href);
// zeromq is a dependency of packages/collective, not of the test package: load that copy.
const zmqPath = createRequire(new URL('package.json', collective)).resolve('zeromq');
const { Push, Pull } = await import(pathToFileURL(zmqPath).href);

/** @type {import('@lorafleet/collective').RingAllReduce | undefined} */
let ring;
/** @type {{ push?: any, pull?: any, ack?: any, ackPull?: any }} */
const raw = {};

const handlers = {
  async bind({ rank, worldSize, checksum, frameBytes, transport, algorithm }) {
    ring = await RingAllReduce.bind({
      rank,
      worldSize,
      listen: 'tcp://127.0.0.1:*',
      checksum,
      transport,
      algorithm,
      ...(frameBytes ? { frameBytes } : {}),
      timeoutMs: 120_000,
    });
    return { endpoint: ring.endpoint };
  },
  async connect({ endpoints }) {
    ring.connect(endpoints);
    return {};
  },
  /**
   * warmup + repeats all-reduces of `bytes` of float32, each timed on its own. The first
   * warm-up checks the sum (every rank contributes rank + 1), so a broken ring cannot
   * pass for a fast one.
   */
  async reduce({ rank, worldSize, bytes, warmup, repeats, runId }) {
    const buffer = new Float32Array(bytes / 4).fill(rank + 1);
    const want = (worldSize * (worldSize + 1)) / 2;
    const times = [];
    for (let i = 0; i < warmup + repeats; i++) {
      const started = performance.now();
      await ring.allReduce(buffer, { step: i, runId });
      const ms = performance.now() - started;
      if (i === 0 && (buffer[0] !== want || buffer[buffer.length - 1] !== want)) {
        throw new Error(
          `rank ${rank}: sum is ${buffer[0]}..${buffer[buffer.length - 1]}, want ${want}`,
        );
      }
      if (i >= warmup) times.push(ms);
    }
    return { times };
  },
  /** The receiving end: a PULL for data, and a PUSH back to the sender for one ack per batch. */
  async rawReceiver() {
    raw.pull = new Pull({ linger: 0 });
    await raw.pull.bind('tcp://127.0.0.1:*');
    raw.ack = new Push({ linger: 0 });
    return { endpoint: raw.pull.lastEndpoint };
  },
  async rawSender({ endpoint }) {
    raw.push = new Push({ linger: 0 });
    raw.push.connect(endpoint);
    raw.ackPull = new Pull({ linger: 0 });
    await raw.ackPull.bind('tcp://127.0.0.1:*');
    return { endpoint: raw.ackPull.lastEndpoint };
  },
  async rawConnectAck({ endpoint }) {
    raw.ack.connect(endpoint);
    return {};
  },
  /** Receives `batches` batches of `count` messages, acking each batch. Runs until done. */
  async rawReceive({ count, batches }) {
    for (let b = 0; b < batches; b++) {
      for (let i = 0; i < count; i++) await raw.pull.receive();
      await raw.ack.send('k');
    }
    return {};
  },
  /**
   * Sends batches of `count` messages of `bytes` each; a batch's time runs from its first
   * send to the receiver's ack of its last message (one small-message latency included).
   */
  async rawSend({ bytes, count, warmup, repeats }) {
    const message = Buffer.alloc(bytes, 1);
    const times = [];
    for (let b = 0; b < warmup + repeats; b++) {
      const started = performance.now();
      for (let i = 0; i < count; i++) await raw.push.send(message);
      await raw.ackPull.receive();
      const ms = performance.now() - started;
      if (b >= warmup) times.push(ms);
    }
    return { times };
  },
  async close() {
    ring?.close();
    for (const socket of Object.values(raw)) socket.close();
    setImmediate(() => process.disconnect());
    return {};
  },
};

process.on('message', async ({ id, type, ...args }) => {
  try {
    process.send({ id, ok: true, ...(await handlers[type](args)) });
  } catch (error) {
    process.send({ id, ok: false, error: String(error?.stack ?? error) });
  }
});
