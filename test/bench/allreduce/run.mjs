#!/usr/bin/env node
// Benchmark 1 (shared/BENCHMARKS.md): busbw of the ring all-reduce over ZeroMQ,
// side by side, in the same run, with raw zeromq.js PUSH/PULL throughput (the
// transport's limit) and with torch.distributed gloo all_reduce (the peer).
// Phases run one after another, `--world` busy processes at a time; see README.md.
import { fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runGloo, torchVersion } from './gloo.mjs';
import { collectiveRow, gb, median, size, summary, table } from './report.mjs';

const here = import.meta.dirname;
const root = join(here, '..', '..', '..');
const { values: opts } = parseArgs({
  options: {
    sizes: { type: 'string', default: '64KiB,1MiB,16MiB,64MiB' },
    // Whole runs (every phase, every size), one after another: the table gives their median and spread.
    repeats: { type: 'string', default: '3' },
    // Timed calls per size in each run, after the warm-up calls. 30: at 64 KiB and 1 MiB a
    // call lasts under a millisecond, and with 10 the runs' medians spread 0.4x-3.9x of gloo.
    calls: { type: 'string', default: '30' },
    warmup: { type: 'string', default: '2' },
    // Untimed small all-reduces before a ring phase's sizes, so V8 has compiled the ring's code.
    'jit-warmup': { type: 'string', default: '200' },
    world: { type: 'string', default: '2' },
    // A raw zeromq batch moves at least this much, so small messages are timed over many.
    'raw-bytes': { type: 'string', default: '4MiB' },
    'frame-bytes': { type: 'string' },
    // auto: two ranks exchange whole buffers up to one piece; ring / exchange: always that one.
    algorithm: { type: 'string', default: 'auto' },
    python: { type: 'string', default: '/usr/bin/python3' },
    skip: {
      type: 'string',
      default: '',
      description: 'comma list of: ring, crc, ring-zmq, zmq, zmq2, gloo',
    },
    out: { type: 'string', default: join(root, 'runs', 'bench-allreduce') },
    help: { type: 'boolean', default: false },
  },
});
if (opts.help) {
  console.log(
    'node test/bench/allreduce/run.mjs [--sizes 64KiB,1MiB,16MiB,64MiB] [--repeats 3] [--calls 30]\n' +
      '  [--warmup 2] [--jit-warmup 200] [--world 2] [--raw-bytes 4MiB] [--frame-bytes N]\n' +
      '  [--algorithm auto|ring|exchange]\n' +
      '  [--python /usr/bin/python3]\n' +
      '  [--skip ring,crc,ring-zmq,zmq,zmq2,gloo] [--out DIR]\n\n' +
      '  --repeats  whole runs (every phase and size); the table shows their median and spread\n' +
      '  --calls    timed calls per size and run (after --warmup calls; the first checks the sum)\n' +
      '  --jit-warmup  untimed 16 KiB all-reduces before each ring phase (0: none), so the timed\n' +
      '             calls run compiled code, as a training run does after its first steps; the zmq\n' +
      '             phase streams jit-warmup / 10 batches of 64 x 64 KiB messages first\n' +
      '  --algorithm  auto (default: 2 ranks exchange whole buffers in one round up to one piece,\n' +
      '             the ring beyond and with more ranks), ring (the ring always) or exchange (2\n' +
      '             ranks, the exchange at any size); the ring phases only\n' +
      '  --skip     phases to leave out: ring (tcp transport, payload CRC off: the defaults),\n' +
      '             crc (the same, payload CRC on), ring-zmq (the ZeroMQ transport, which CURVE uses),\n' +
      '             zmq (raw zeromq.js one-way), zmq2 (raw zeromq.js both ways at once, as an\n' +
      '             all-reduce of 2 ranks moves its bytes), gloo (torch.distributed gloo)',
  );
  process.exit(0);
}

function parseBytes(text) {
  const m = /^(\d+)\s*(B|KiB|MiB|GiB)?$/i.exec(text.trim());
  if (!m) throw new Error(`size "${text}": expected a number with B, KiB, MiB or GiB, e.g. 64KiB`);
  const unit = { b: 1, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30 }[(m[2] ?? 'B').toLowerCase()];
  const bytes = Number(m[1]) * unit;
  if (bytes < 4 || bytes % 4)
    throw new Error(`size "${text}" must be a positive multiple of 4 bytes`);
  return bytes;
}
function positive(name) {
  const n = Number(opts[name]);
  if (!Number.isInteger(n) || n < (name === 'warmup' ? 0 : 1))
    throw new Error(`--${name} ${opts[name]}: expected an integer`);
  return n;
}

const sizes = opts.sizes.split(',').map(parseBytes);
const repeats = positive('repeats');
const calls = positive('calls');
const warmup = Math.max(1, positive('warmup')); // the first call checks the sum
const jitWarmup = Number(opts['jit-warmup']);
if (!Number.isInteger(jitWarmup) || jitWarmup < 0)
  throw new Error(`--jit-warmup ${opts['jit-warmup']}: expected an integer >= 0`);
const world = positive('world');
const rawBytes = parseBytes(opts['raw-bytes']);
const frameBytes = opts['frame-bytes'] ? parseBytes(opts['frame-bytes']) : undefined;
const skip = new Set(opts.skip.split(',').filter(Boolean));
const algorithm = opts.algorithm;
if (!['auto', 'ring', 'exchange'].includes(algorithm))
  throw new Error(`--algorithm ${algorithm}: expected auto, ring or exchange`);
if (world < 2) throw new Error('--world must be at least 2');

/** A forked rank.mjs, request/reply over IPC. */
class BenchProcess {
  #next = 0;
  #pending = new Map();
  #stderr = '';
  child = fork(join(here, 'rank.mjs'), [], {
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
  });

  constructor() {
    this.child.stderr.on('data', (d) => (this.#stderr += d));
    this.child.on('message', ({ id, ...reply }) => {
      this.#pending.get(id)?.(reply);
      this.#pending.delete(id);
    });
    this.child.on('exit', (code, signal) => {
      for (const resolve of this.#pending.values())
        resolve({
          ok: false,
          error: `rank.mjs exited (${signal ?? code}): ${this.#stderr.slice(-2000)}`,
        });
      this.#pending.clear();
    });
  }

  async call(type, args = {}) {
    const id = this.#next++;
    const reply = await new Promise((resolve) => {
      this.#pending.set(id, resolve);
      this.child.send({ id, type, ...args });
    });
    if (!reply.ok) throw new Error(`${type}: ${reply.error}`);
    return reply;
  }

  async close() {
    await this.call('close').catch(() => undefined);
    this.child.kill();
  }
}

/** Per-call time of a collective: the slowest rank's, call by call. */
const slowest = (perRank) => perRank[0].map((_, i) => Math.max(...perRank.map((t) => t[i])));
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
const phases = [];

function progress({ bytes, medianMs, busbw }) {
  const ms = medianMs.toFixed(3);
  console.error(`  ${size(bytes).padStart(8)}  ${ms} ms  busbw ${busbw.toFixed(3)} GB/s`);
}

function record(name, note, rows) {
  phases.push({ name, note, loadBefore: note.loadBefore, loadAfter: load(), rows });
  console.error(`  done; load average ${load()}`);
}

async function ringPhase(checksum, transport = 'tcp') {
  const name = transport === 'zmq' ? 'ring-zmq' : checksum ? 'ring-crc' : 'ring';
  const loadBefore = load();
  console.error(`${name}: ${world} processes, load average ${loadBefore}`);
  const ranks = Array.from({ length: world }, () => new BenchProcess());
  const rows = [];
  try {
    const bound = await Promise.all(
      ranks.map((p, rank) =>
        p.call('bind', { rank, worldSize: world, checksum, frameBytes, transport, algorithm }),
      ),
    );
    const endpoints = bound.map((b) => b.endpoint);
    await Promise.all(ranks.map((p) => p.call('connect', { endpoints })));
    if (jitWarmup > 0) {
      const args = { worldSize: world, bytes: 16 << 10, warmup: jitWarmup, repeats: 0 };
      await Promise.all(
        ranks.map((p, rank) => p.call('reduce', { ...args, rank, runId: `${name}-jit` })),
      );
    }
    for (const bytes of sizes) {
      const runId = `${name}-${bytes}`;
      const replies = await Promise.all(
        ranks.map((p, rank) =>
          p.call('reduce', { rank, worldSize: world, bytes, warmup, repeats: calls, runId }),
        ),
      );
      const times = slowest(replies.map((r) => r.times));
      rows.push(collectiveRow(bytes, times, world));
      progress(rows.at(-1));
    }
  } finally {
    await Promise.all(ranks.map((p) => p.close()));
  }
  record(
    name,
    {
      loadBefore,
      frameBytes: frameBytes ?? 'default (tcp 2 MiB, zmq 512 KiB)',
      checksum,
      transport,
      algorithm,
      jitWarmup,
    },
    rows,
  );
}

async function zmqPhase() {
  const loadBefore = load();
  console.error(`zmq push/pull: 2 processes, load average ${loadBefore}`);
  const [receiver, sender] = [new BenchProcess(), new BenchProcess()];
  const rows = [];
  try {
    const { endpoint } = await receiver.call('rawReceiver');
    const ack = await sender.call('rawSender', { endpoint });
    await receiver.call('rawConnectAck', { endpoint: ack.endpoint });
    // As the ring phases' --jit-warmup: compiled code, and TCP buffers grown to the traffic,
    // before the first timed size (without it, a run of 1 MiB alone measured 0.32 GB/s, not
    // 1.5-2.2; 16 KiB messages were not enough to grow them).
    if (jitWarmup > 0) {
      const batches = Math.ceil(jitWarmup / 10);
      await Promise.all([
        receiver.call('rawReceive', { count: 64, batches }),
        sender.call('rawSend', { bytes: 65536, count: 64, warmup: batches, repeats: 0 }),
      ]);
    }
    for (const bytes of sizes) {
      const count = Math.max(1, Math.ceil(rawBytes / bytes));
      const [, sent] = await Promise.all([
        receiver.call('rawReceive', { count, batches: warmup + calls }),
        sender.call('rawSend', { bytes, count, warmup, repeats: calls }),
      ]);
      const ms = median(sent.times);
      rows.push({
        bytes,
        messagesPerBatch: count,
        medianMs: ms,
        gbps: gb(bytes * count, ms),
        timesMs: sent.times,
      });
      console.error(
        `  ${size(bytes).padStart(8)}  ${count} msgs  ${ms.toFixed(3)} ms  ${gb(bytes * count, ms).toFixed(3)} GB/s`,
      );
    }
  } finally {
    await Promise.all([receiver.close(), sender.close()]);
  }
  record('zmq-push-pull', { loadBefore, rawBytes }, rows);
}

/**
 * Both ways at once: each of two processes streams to the other, as the two ranks of an
 * all-reduce both send and receive. GB/s per direction, the slower direction's median.
 */
async function zmqBothWaysPhase() {
  const loadBefore = load();
  console.error(`zmq push/pull both ways: 2 processes, load average ${loadBefore}`);
  const ends = [new BenchProcess(), new BenchProcess()];
  const rows = [];
  try {
    for (const [to, from] of [ends, [...ends].reverse()]) {
      const { endpoint } = await to.call('rawReceiver');
      const ack = await from.call('rawSender', { endpoint });
      await to.call('rawConnectAck', { endpoint: ack.endpoint });
    }
    const stream = async (bytes, count, warm, repeats) => {
      const args = { bytes, count, warmup: warm, repeats };
      const replies = await Promise.all([
        ...ends.map((p) => p.call('rawReceive', { count, batches: warm + repeats })),
        ...ends.map((p) => p.call('rawSend', args)),
      ]);
      return replies.slice(2).map((r) => r.times);
    };
    if (jitWarmup > 0) await stream(65536, 64, Math.ceil(jitWarmup / 10), 0);
    for (const bytes of sizes) {
      const count = Math.max(1, Math.ceil(rawBytes / bytes));
      const times = await stream(bytes, count, warmup, calls);
      const ms = Math.max(...times.map(median));
      rows.push({
        bytes,
        messagesPerBatch: count,
        medianMs: ms,
        gbps: gb(bytes * count, ms),
        timesMs: times,
      });
      console.error(
        `  ${size(bytes).padStart(8)}  ${count} msgs each way  ${ms.toFixed(3)} ms  ${gb(bytes * count, ms).toFixed(3)} GB/s per direction`,
      );
    }
  } finally {
    await Promise.all(ends.map((p) => p.close()));
  }
  record('zmq-both-ways', { loadBefore, rawBytes }, rows);
}

async function glooPhase(version) {
  const loadBefore = load();
  console.error(`gloo (torch ${version}): ${world} processes, load average ${loadBefore}`);
  const results = await runGloo({
    python: opts.python,
    world,
    sizes,
    warmup,
    repeats: calls,
    onSize: (bytes, timesMs) => progress(collectiveRow(bytes, timesMs, world)),
  });
  const rows = results.map(({ bytes, timesMs }) => collectiveRow(bytes, timesMs, world));
  record('gloo', { loadBefore, torch: version, threads: 1 }, rows);
}

const started = new Date();
console.error(
  `sizes ${sizes.map(size).join(', ')}; ${repeats} runs of warmup ${warmup} + ${calls} calls; world ${world}; ${cpus().length} cores, load average ${load()}`,
);
const version = skip.has('gloo') ? null : torchVersion(opts.python);
if (!version && !skip.has('gloo'))
  console.error(
    `gloo: ${opts.python} cannot import torch (apt-get install python3-torch); showing BENCHMARKS.md's figures, not measured here`,
  );
const runs = [];
for (let run = 0; run < repeats; run++) {
  console.error(`\nrun ${run + 1} of ${repeats}`);
  phases.length = 0;
  if (!skip.has('ring')) await ringPhase(false);
  if (!skip.has('crc')) await ringPhase(true);
  if (!skip.has('ring-zmq')) await ringPhase(false, 'zmq');
  if (!skip.has('zmq')) await zmqPhase();
  if (!skip.has('zmq2')) await zmqBothWaysPhase();
  if (version) await glooPhase(version);
  runs.push({ phases: [...phases], table: table(phases, sizes, Boolean(version)) });
}

const markdown = summary(
  runs.map((r) => r.phases),
  sizes,
  Boolean(version),
);
console.log(
  `\n${repeats} runs; each figure is the median over runs of each run's median over ${calls} calls, [min-max over runs]. ` +
    `busbw = bytes / time x 2(n-1)/n, n = ${world}; GB/s = 1e9 bytes/s; zeromq: one-way stream of messages of that size; ` +
    `zeromq both ways: each process streams to the other at once, GB/s per direction (the slower); ` +
    `ring: tcp transport, payload CRC off (the defaults); ring+crc: CRC on; ring-zmq: the ZeroMQ transport (CURVE's). Load average at the end: ${load()} on ${cpus().length} cores\n`,
);
console.log(markdown);
mkdirSync(opts.out, { recursive: true });
const file = join(opts.out, `${started.toISOString().replace(/[:.]/g, '-')}.json`);
const result = {
  benchmark: 'allreduce',
  started: started.toISOString(),
  seconds: (Date.now() - started.getTime()) / 1000,
  options: {
    sizes,
    repeats,
    calls,
    warmup,
    jitWarmup,
    world,
    rawBytes,
    frameBytes: frameBytes ?? null,
    python: opts.python,
  },
  machine: { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version, torch: version },
  runs,
  table: markdown,
};
writeFileSync(file, JSON.stringify(result, null, 2));
console.log(`\nwrote ${file} (${result.seconds.toFixed(0)} s)`);
