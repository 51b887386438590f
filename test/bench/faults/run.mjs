#!/usr/bin/env node
// Faults injected into real runs, and what they cost (issue 7's README table):
//   node test/bench/faults/run.mjs [--out runs/bench-faults] [--kills 3]
// Scenario A: `train --workers 3` on the default model with --kills SIGKILLs
// of random workers (respawned) and one SIGSTOP (evicted after the heartbeat
// timeout). Scenario B: the coordinator is SIGKILLed and the run resumed with
// --resume. Recovery time = from the fault to the next committed step, as a
// watcher of metrics.jsonl sees it (detection included), compared with the
// run's median step time. Samples lost / duplicated come from the ledger.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const { values } = parseArgs({
  options: {
    out: { type: 'string', default: 'runs/bench-faults' },
    kills: { type: 'string', default: '3' },
    steps: { type: 'string', default: '60' },
    scenarios: { type: 'string', default: 'kill,crash,term,diverge' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(
    'usage: node test/bench/faults/run.mjs [--out DIR] [--kills 3] [--steps 60] [--scenarios kill,crash,term,diverge]',
  );
  process.exit(0);
}
const out = join(root, values.out);
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'data'), { recursive: true });
const cli = join(root, 'apps/coordinator/bin/lorafleet.js');
const model = join(root, 'packages/models/pretrained/default');
const steps = Number(values.steps);
const kills = Number(values.kills);
const scenarios = new Set(values.scenarios.split(','));

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
const common = (dir) => [
  'train',
  ...['--model', model, '--data', join(out, 'data/train.jsonl'), '--out', dir],
  ...['--steps', String(steps), '--batch-size', '6', '--seq-len', '64', '--lora-dropout', '0'],
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const committed = (dir) => {
  try {
    return readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
};

function start(args) {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const done = new Promise((resolve) => child.on('close', (code) => resolve(code)));
  return {
    child,
    done,
    output: () => output,
    pids: () => [...output.matchAll(/worker \d+ \(pid (\d+)\) said Hello/g)].map((m) => +m[1]),
  };
}

async function untilStep(dir, step, run) {
  while (committed(dir) < step) {
    if (run.child.exitCode !== null)
      throw new Error(`run ended before step ${step}\n${run.output()}`);
    await sleep(10);
  }
}

/** Time from now until metrics.jsonl grows past `from` steps. */
async function recovery(dir, from, run) {
  const t0 = performance.now();
  await untilStep(dir, from + 1, run);
  return (performance.now() - t0) / 1000;
}

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
      else s.add(id);
    }
    seen.set(e.epoch, s);
  }
  // Every epoch but the last is complete: each must hold every sample.
  const size = Math.max(...[...seen.values()].map((s) => s.size));
  const epochs = [...seen.keys()].sort((a, b) => a - b);
  const lost = epochs.slice(0, -1).reduce((n, e) => n + (size - seen.get(e).size), 0);
  return { lost, duplicated, steps: entries.length };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const stepTimes = (dir) => {
  const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l).seconds);
  return lines.slice(1).map((s, i) => s - lines[i]);
};

const rows = [];
// A: SIGKILLs and a SIGSTOP on 3 workers.
if (scenarios.has('kill')) {
  const dir = join(out, 'chaos');
  const run = start([
    ...common(dir),
    '--workers',
    '3',
    '--max-restarts',
    String(kills),
    '--heartbeat-timeout',
    '3',
  ]);
  const at = Array.from({ length: kills + 1 }, (_, i) =>
    Math.round(((i + 1) * steps) / (kills + 3)),
  );
  const killTimes = [];
  const dead = new Set();
  for (const [i, step] of at.entries()) {
    await untilStep(dir, step, run);
    const live = run.pids().filter((p) => !dead.has(p));
    const pid = live[Math.floor(Math.random() * live.length)];
    const signal = i < kills ? 'SIGKILL' : 'SIGSTOP';
    process.kill(pid, signal);
    dead.add(pid);
    killTimes.push({ signal, seconds: await recovery(dir, committed(dir), run) });
  }
  const code = await run.done;
  if (code !== 0) throw new Error(`chaos run failed\n${run.output()}`);
  const a = audit(dir);
  const step = median(stepTimes(dir));
  for (const signal of ['SIGKILL', 'SIGSTOP']) {
    const t = killTimes.filter((k) => k.signal === signal).map((k) => k.seconds);
    rows.push({
      fault:
        signal === 'SIGKILL'
          ? 'worker SIGKILLed (respawned, rejoins)'
          : 'worker hung (SIGSTOP; evicted)',
      count: t.length,
      recovery: `${Math.min(...t).toFixed(2)}-${Math.max(...t).toFixed(2)} s (median step ${step.toFixed(2)} s)`,
      lost: a.lost,
      duplicated: a.duplicated,
    });
  }
}
// B: the coordinator SIGKILLed, then --resume.
if (scenarios.has('crash')) {
  const dir = join(out, 'crash');
  const args = [...common(dir), '--workers', '2', '--checkpoint-every', '10'];
  const run = start(args);
  await untilStep(dir, Math.round(steps / 2) + 3, run);
  const pids = run.pids();
  run.child.kill('SIGKILL');
  await run.done;
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  const t0 = performance.now();
  const resumed = start([...args, '--resume', dir]);
  const before = Number(
    /resuming from .* at step (\d+)/.exec(
      await (async () => {
        while (!/resuming from .* at step \d+/.test(resumed.output())) await sleep(10);
        return resumed.output();
      })(),
    )[1],
  );
  // The resumed run first cuts metrics.jsonl back to the checkpoint's step, then appends.
  while (committed(dir) !== before) await sleep(5);
  while (committed(dir) <= before) await sleep(10);
  const seconds = (performance.now() - t0) / 1000;
  if ((await resumed.done) !== 0) throw new Error(`resume failed\n${resumed.output()}`);
  const whole = join(out, 'whole');
  const w = start([...common(whole), '--workers', '2', '--checkpoint-every', '10']);
  if ((await w.done) !== 0) throw new Error(w.output());
  const same = readFileSync(join(dir, 'adapter/adapter_model.safetensors')).equals(
    readFileSync(join(whole, 'adapter/adapter_model.safetensors')),
  );
  const a = audit(dir);
  rows.push({
    fault: `coordinator SIGKILLed, resumed (adapter bitwise equal: ${same ? 'yes' : 'NO'})`,
    count: 1,
    recovery: `${seconds.toFixed(2)} s to the first new step (process start + model load)`,
    lost: a.lost,
    duplicated: a.duplicated,
  });
}

// C: SIGTERM (what Slurm and Kubernetes send first): the step finishes, a checkpoint is
// written, the workers stop, exit 143.
if (scenarios.has('term')) {
  const dir = join(out, 'term');
  const run = start([...common(dir), '--workers', '2']);
  await untilStep(dir, 5, run);
  const pids = run.pids();
  const t0 = performance.now();
  run.child.kill('SIGTERM');
  const code = await run.done;
  const seconds = (performance.now() - t0) / 1000;
  const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
  const checkpoint = existsSync(
    join(dir, 'checkpoints', `step-${String(summary.steps).padStart(6, '0')}`),
  );
  const orphans = pids.filter((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  });
  const a = audit(dir);
  rows.push({
    fault: `coordinator sent SIGTERM (exit ${code}; checkpoint of the last step: ${checkpoint ? 'yes' : 'NO'}; workers left running: ${orphans.length})`,
    count: 1,
    recovery: `${seconds.toFixed(2)} s from SIGTERM to exit (grace 25 s)`,
    lost: a.lost,
    duplicated: a.duplicated,
  });
}
// D: a diverged run (--lr 1e30): exit 1 at the step that diverged, no adapter written.
if (scenarios.has('diverge')) {
  const dir = join(out, 'diverge');
  const t0 = performance.now();
  const run = start([...common(dir), '--workers', '2', '--lr', '1e30', '--checkpoint-every', '1']);
  const code = await run.done;
  const seconds = (performance.now() - t0) / 1000;
  const step = /step (\d+): the run diverged/.exec(run.output())?.[1] ?? '?';
  rows.push({
    fault: `diverged (--lr 1e30): exit ${code} at step ${step}, adapter written: ${existsSync(join(dir, 'adapter')) ? 'YES' : 'no'}`,
    count: 1,
    recovery: `${seconds.toFixed(2)} s from start to exit (stopped, not recovered)`,
    lost: '-',
    duplicated: '-',
  });
}

const table = [
  '| fault | injected | recovery time | samples lost | samples duplicated |',
  '|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.fault} | ${r.count} | ${r.recovery} | ${r.lost} | ${r.duplicated} |`),
].join('\n');
console.log(table);
writeFileSync(join(out, 'table.md'), table + '\n');
if (!existsSync(join(out, 'table.md'))) process.exit(1);
