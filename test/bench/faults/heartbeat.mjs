#!/usr/bin/env node
// How fast a stopped or hung worker is found (issue 15, "Heartbeats that
// compute cannot block"), with real processes:
//   node test/bench/faults/heartbeat.mjs [--out runs/bench-heartbeat] [--repeats 3]
//     [--heartbeat-timeout 2] [--step-timeout 5] [--block-ms 3000] [--scenarios stop,hang]
// `train --workers 2` on the default model, one small micro-batch per worker
// and step, made a 3 s one by LORAFLEET_FAULT_BLOCK_MS (a test hook that
// blocks the worker's main thread like a long kernel: the same on a quiet and
// a loaded machine). stop: rank 1 SIGSTOPped 1 s into step 3's micro-batch.
// hang: LORAFLEET_FAULT_HANG_AT (a test hook) blocks rank 1's main thread in
// step 3's micro-batch for good. Detection time = from the fault (SIGSTOP, or
// the hook's line) to the coordinator's "lost" event (events.jsonl, wall
// clock); the run must then finish on the survivor. Without --step-timeout
// (or with a CLI that lacks it) the hang is found by whatever the CLI does by
// default.
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
    'block-ms': { type: 'string', default: '3000' },
    scenarios: { type: 'string', default: 'stop,hang' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(
    'usage: node test/bench/faults/heartbeat.mjs [--out DIR] [--repeats 3] [--heartbeat-timeout 2] [--step-timeout S] [--block-ms 3000] [--scenarios stop,hang]',
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
  ...['--steps', '6', '--batch-size', '8', '--micro-batch-size', '4', '--seq-len', '32'],
  ...['--lora-dropout', '0', '--workers', '2', '--max-restarts', '0'],
  ...['--heartbeat-timeout', values['heartbeat-timeout']],
  ...(stepTimeout ? ['--step-timeout', stepTimeout] : []),
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A run whose output lines are timestamped as they arrive. */
function start(dir, env = {}) {
  const child = spawn(process.execPath, [cli, ...args(dir)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LORAFLEET_FAULT_BLOCK_MS: values['block-ms'], ...env },
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

/** The coordinator's first "lost" event: its wall-clock time and its reason. */
function lostEvent(dir) {
  const lines = readFileSync(join(dir, 'events.jsonl'), 'utf8').split('\n').filter(Boolean);
  const event = lines.map((l) => JSON.parse(l)).find((e) => / lost: /.test(e.message ?? ''));
  if (!event) throw new Error(`no "lost" event in ${dir}/events.jsonl`);
  return { time: event.time, reason: event.message.replace(/^.* lost: /, '') };
}

/** Samples committed twice within an epoch (OUT/ledger.jsonl), and the committed steps. */
function audit(dir) {
  const entries = readFileSync(join(dir, 'ledger.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  const seen = new Map();
  let duplicated = 0;
  for (const e of entries) {
    const s = seen.get(e.epoch) ?? new Set();
    for (const id of e.ids) {
      if (s.has(id)) duplicated++;
      s.add(id);
    }
    seen.set(e.epoch, s);
  }
  return { duplicated, steps: entries.length };
}

/** One fault, the time to the coordinator's "lost" event, the run's end. */
async function trial(kind, i) {
  const dir = join(out, `${kind}-${i}`);
  const run = start(dir, kind === 'hang' ? { LORAFLEET_FAULT_HANG_AT: '1:3' } : {});
  const ready = await until(run, (l) => /rank 1\/2 \(pid \d+\)/.test(l), 'rank 1 ready');
  const pid = Number(/rank 1\/2 \(pid (\d+)\)/.exec(ready.line)[1]);
  let faultAt;
  if (kind === 'stop') {
    await until(run, (l) => /rank 1: test hook: a micro-batch of step 3 blocks/.test(l), 'step 3');
    await sleep(1000);
    process.kill(pid, 'SIGSTOP');
    faultAt = Date.now();
  } else {
    await until(run, (l) => /test hook: the computation of step 3 hangs/.test(l), 'the hang');
    // The hook's line is relayed by the coordinator: at most this late.
    faultAt = Date.now();
  }
  await until(run, (l) => / lost: /.test(l), 'the loss');
  const code = await run.done;
  if (code !== 0) throw new Error(`${kind} run ${i} failed (exit ${code})\n${run.output()}`);
  const lost = lostEvent(dir);
  const compute = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l).computeSeconds);
  return {
    ...audit(dir),
    seconds: (lost.time - faultAt) / 1000,
    reason: lost.reason,
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
      `${Math.max(...trials.map((x) => x.compute)).toFixed(1)} s | ` +
      `${trials.map((x) => x.steps).join(', ')} | ${trials.reduce((n, x) => n + x.duplicated, 0)} | ` +
      `${trials[0].reason} |`,
  );
}
const table = [
  `heartbeat timeout ${values['heartbeat-timeout']} s; step timeout ${stepTimeout ?? '(default)'}`,
  '',
  '| fault | detection (median, range) | longest step compute | steps committed | samples duplicated | coordinator says |',
  '|---|---|---|---|---|---|',
  ...rows,
].join('\n');
console.log(table);
writeFileSync(join(out, 'table.md'), table + '\n');
