#!/usr/bin/env node
// Does tfjs-wasm's multithreaded build help? One worker with 1 thread vs N
// threads, and a fleet of one worker per core (all running at once, as
// `lorafleet train --workers` places them) with 1 thread each vs N each.
// tokens/s of the project's step (project-step.mjs), fleets summed.
//   pnpm build && node test/bench/cpu-step/threads.mjs [--shape tiny] [--threads 2] [--steps 6]
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SHAPES } from './shapes.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const USAGE = `usage: node test/bench/cpu-step/threads.mjs [options]   (after pnpm build)
  --shape NAME    ${Object.keys(SHAPES).join(' or ')} (default tiny)
  --threads N     threads per worker in the multithreaded runs (default 2)
  --workers N     workers in the fleet runs (default: one per core, ${availableParallelism()} here)
  --steps N       timed steps per worker (default 6), after 2 warm-ups
  -h, --help      show this help`;
const { values: opts } = parseArgs({
  options: {
    shape: { type: 'string', default: 'tiny' },
    threads: { type: 'string', default: '2' },
    workers: { type: 'string', default: String(availableParallelism()) },
    steps: { type: 'string', default: '6' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}
const threads = Number(opts.threads);
const workers = Number(opts.workers);
if (!SHAPES[opts.shape] || !(threads >= 2) || !(workers >= 1)) {
  console.error(
    `bad options: --shape ${opts.shape} --threads ${opts.threads} --workers ${opts.workers}\n${USAGE}`,
  );
  process.exit(2);
}

/** One worker's step with `n` wasm threads (0: the stock single-threaded build). */
function worker(n) {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [join(here, 'project-step.mjs'), opts.shape, opts.steps, '2'],
      { env: { ...process.env, CPU_STEP_WASM_THREADS: String(n) } },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) =>
      code === 0
        ? resolve(JSON.parse(out.trim().split('\n').at(-1)).tokensPerSecond)
        : reject(new Error(`project-step.mjs with ${n} threads failed (${code}):\n${err}`)),
    );
  });
}
const fleet = async (n) =>
  (await Promise.all(Array.from({ length: workers }, () => worker(n)))).reduce((a, b) => a + b, 0);

const one1 = await worker(0);
const oneN = await worker(threads);
const fleet1 = await fleet(0);
const fleetN = await fleet(threads);
console.log(
  `shape ${opts.shape}, tokens/s (median of ${opts.steps} steps per worker; fleets: the sum)`,
);
console.log('| run | 1 thread per worker | ' + threads + ' threads per worker | ratio |');
console.log('|---|---|---|---|');
console.log(
  `| one worker | ${one1.toFixed(0)} | ${oneN.toFixed(0)} | ${(oneN / one1).toFixed(2)} |`,
);
console.log(
  `| ${workers} workers at once | ${fleet1.toFixed(0)} | ${fleetN.toFixed(0)} | ${(fleetN / fleet1).toFixed(2)} |`,
);
