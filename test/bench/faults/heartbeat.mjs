#!/usr/bin/env node
// How fast a stopped or hung worker is found (issue 15, "Heartbeats that
// compute cannot block"), with real processes:
//   node test/bench/faults/heartbeat.mjs [--out runs/bench-heartbeat] [--repeats 3]
//     [--heartbeat-timeout 2] [--step-timeout 5] [--scenarios stop,hang]
// `train --workers 2` on the default model, one 24 x 128-token micro-batch per
// worker and step (about 3 s here). stop: one worker SIGSTOPped 1 s into a
// step's micro-batch. hang: LORAFLEET_FAULT_HANG_AT (a test hook) blocks one
// worker's main thread in a micro-batch for good. Detection time = from the
// fault to the coordinator's "lost" line; the run must then finish on the
// survivor. Without --step-timeout (or with a CLI that lacks it) the hang is
// found by the worker's own limit.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const { values } = parseArgs({
  options: {
    out: { type: 'string', default: 'runs/bench-heartbeat' },
    repeats: { type: 'string', default: '3' },
    'heartbeat-timeout': { type: 'string', default: '2' },
    'step-timeout': { type: 'string' },
    scenarios: { type: 'string', default: 'stop,hang' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(
    'usage: node test/bench/faults/heartbeat.mjs [--out DIR] [--repeats 3] [--heartbeat-timeout 2] [--step-timeout S] [--scenarios stop,hang]',
  );
  process.exit(0);
}
const out = join(root, values.out);
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'data'), { recursive: true });
const cli = join(root, 'apps/coordinator/bin/lorafleet.js');
const model = join(root, 'packages/models/pretrained/default');
const repeats = Number(values.repeats);
const help = spawnSync(process.execPath, [cli, 'train', '--help'], { encoding: 'utf8' }).stdout;
const stepTimeout = help.includes('--step-timeout') ? values['step-timeout'] : undefined;

const prepared = spawnSync(
  process.execPath,
  [
    join(root, 'apps/coordinator/scripts/corpus-text.mjs'),
    'nlp',
    join(out, 'data/train.jsonl'),
    join(out, 'data/valid.jsonl'),
    '--limit',
    '150',
  ],
  { encoding: 'utf8' },
);
if (prepared.status !== 0) throw new Error(prepared.stderr);
const args = (dir) => [
  'train',
  ...['--model', model, '--data', join(out, 'data/train.jsonl'), '--out', dir],
  ...['--steps', '5', '--batch-size', '48', '--micro-batch-size', '24', '--seq-len', '128'],
  ...['--lora-dropout', '0', '--workers', '2', '--max-restarts', '0'],
  ...['--heartbeat-timeout', values['heartbeat-timeout']],
  ...(stepTimeout ? ['--step-timeout', stepTimeout] : []),
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const committed = (dir) => {
  try {
    return readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
};

/** A run whose output lines are timestamped as they arrive. */
function start(dir, env = {}) {
  const child = spawn(process.execPath, [cli, ...args(dir)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const lines = [];
  let output = '';
  const take = (d) => {
    output += d;
    for (const line of String(d).split('\n')) if (line) lines.push({ at: performance.now(), line });
  };
  child.stdout.on('data', take);
  child.stderr.on('data', take);
  const done = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  return { child, done, lines, output: () => output };
}

async function until(run, test, what) {
  for (;;) {
    const hit = run.lines.find((l) => test(l.line));
    if (hit) return hit;
    if (run.child.exitCode !== null) throw new Error(`run ended before ${what}\n${run.output()}`);
    await sleep(5);
  }
}

/** One fault, the time to the coordinator's "lost" line, the run's end. */
async function trial(kind, i) {
  const dir = join(out, `${kind}-${i}`);
  const run = start(dir, kind === 'hang' ? { LORAFLEET_FAULT_HANG_AT: '1:3' } : {});
  let faultAt;
  let pid;
  if (kind === 'stop') {
    const hellos = await until(run, (l) => /\(pid \d+\) said Hello/.test(l), 'Hello');
    while (committed(dir) < 2) await sleep(5);
    pid = Number(/\(pid (\d+)\) said Hello/.exec(hellos.line)[1]);
    await sleep(1000); // into step 3's micro-batch
    process.kill(pid, 'SIGSTOP');
    faultAt = performance.now();
  } else {
    faultAt = (await until(run, (l) => /test hook: the computation of step 3 hangs/.test(l))).at;
  }
  const lost = await until(run, (l) => / lost: /.test(l), 'the loss');
  const code = await run.done;
  if (code !== 0) throw new Error(`${kind} run ${i} failed (exit ${code})\n${run.output()}`);
  const compute = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l).computeSeconds);
  return {
    seconds: (lost.at - faultAt) / 1000,
    reason: lost.line.replace(/^.* lost: /, '').replace(/[\d.]+ s/g, 'N s'),
    compute: Math.max(...compute.slice(1)),
  };
}

const rows = [];
for (const kind of values.scenarios.split(',')) {
  const trials = [];
  for (let i = 0; i < repeats; i++) trials.push(await trial(kind, i));
  const t = trials.map((x) => x.seconds).sort((a, b) => a - b);
  const fault =
    kind === 'stop'
      ? 'worker SIGSTOPped 1 s into a micro-batch'
      : `worker's compute hangs, its process lives (step timeout ${stepTimeout ? `${stepTimeout} s` : 'default'})`;
  rows.push(
    `| ${fault} | ${t[Math.floor(t.length / 2)].toFixed(2)} s (${t[0].toFixed(2)}-${t.at(-1).toFixed(2)}, ${t.length} runs) | ` +
      `${Math.max(...trials.map((x) => x.compute)).toFixed(1)} s | ${trials[0].reason} |`,
  );
}
const table = [
  `heartbeat timeout ${values['heartbeat-timeout']} s; step timeout ${stepTimeout ?? '(default)'}`,
  '',
  '| fault | detection (median, range) | longest step compute | coordinator says |',
  '|---|---|---|---|',
  ...rows,
].join('\n');
console.log(table);
writeFileSync(join(out, 'table.md'), table + '\n');
