#!/usr/bin/env node
// Weak scaling of `lorafleet train --workers N` on this machine, and bytes on
// the wire per step for LoRA vs full fine-tuning (BENCHMARKS.md, items 3-4).
//   node test/bench/scaling/run.mjs [--steps 30] [--batch-per-worker 8] [--workers 2]
// Each run fine-tunes the default model on nlp-corpus sentences with the same
// per-worker batch; the figure is tokens/s(N workers) / (N x tokens/s(1 worker))
// from the runs' summary.json, plus the step split from metrics.jsonl.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '30' },
    'batch-per-worker': { type: 'string', default: '8' },
    workers: { type: 'string', default: '2' },
    out: { type: 'string', default: 'runs/bench-scaling' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(
    'usage: node test/bench/scaling/run.mjs [--steps 30] [--batch-per-worker 8] [--workers 2] [--out DIR]',
  );
  process.exit(0);
}
const steps = Number(values.steps);
const perWorker = Number(values['batch-per-worker']);
const workers = Number(values.workers);
const out = join(root, values.out);
const data = join(out, 'data');
mkdirSync(data, { recursive: true });
const model = join(root, 'packages/models/pretrained/default');
const run = (args) => {
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) {
    console.error(r.stdout, r.stderr);
    process.exit(r.status ?? 1);
  }
  return r.stdout;
};

run([
  join(root, 'apps/coordinator/scripts/corpus-text.mjs'),
  'nlp',
  join(data, 'train.jsonl'),
  join(data, 'valid.jsonl'),
  '--limit',
  '4000',
]);
const lora = { r: 8, target: 'c_attn,c_proj' };

function train(n) {
  const dir = join(out, `workers-${n}`);
  const started = performance.now();
  run([
    join(root, 'apps/coordinator/bin/lorafleet.js'),
    'train',
    '--model',
    model,
    '--data',
    join(data, 'train.jsonl'),
    '--out',
    dir,
    '--steps',
    String(steps),
    '--batch-size',
    String(perWorker * n),
    '--seq-len',
    '128',
    '--lora-r',
    String(lora.r),
    '--target',
    lora.target,
    '--lr',
    '2e-3',
    '--workers',
    String(n),
    '--seed',
    '0',
  ]);
  const wall = (performance.now() - started) / 1000;
  const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
  const metrics = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  // Steady state: skip the first 3 steps (warm-up, first allocations).
  const steady = metrics.slice(3);
  const stepSeconds = (steady.at(-1).seconds - metrics[2].seconds) / steady.length;
  const mean = (f) => steady.reduce((s, m) => s + (f(m) ?? 0), 0) / steady.length;
  return {
    workers: n,
    tokensPerSecond:
      steady.reduce((s, m) => s + m.tokens, 0) / (steady.at(-1).seconds - metrics[2].seconds),
    stepSeconds,
    computeSeconds: n > 1 ? mean((m) => m.computeSeconds) : undefined,
    allReduceSeconds: n > 1 ? mean((m) => m.allReduceSeconds) : undefined,
    trainable: summary.trainableParameters,
    total: summary.totalParameters,
    wallSeconds: wall,
  };
}

const one = train(1);
const many = train(workers);
const efficiency = many.tokensPerSecond / (workers * one.tokensPerSecond);
// Ring all-reduce: each rank sends 2(n-1)/n of the fused buffer (gradients + loss sum + token count) per step.
const ringBytes = (params) => ((2 * (workers - 1)) / workers) * (params + 2) * 4;
const report = {
  command: `node test/bench/scaling/run.mjs ${process.argv.slice(2).join(' ')}`.trim(),
  steps,
  perWorkerBatch: perWorker,
  one,
  many,
  weakScalingEfficiency: efficiency,
  bytesPerRankPerStep: {
    lora: ringBytes(one.trainable),
    full: ringBytes(one.total),
    ratio: one.total / one.trainable,
  },
};
writeFileSync(join(out, 'results.json'), JSON.stringify(report, null, 2) + '\n');
const f = (x, d = 2) => (x === undefined ? '-' : x.toFixed(d));
console.log(
  `weak scaling, default model, LoRA r=${lora.r} on ${lora.target}, ${perWorker} x 128 tokens per worker, ${steps} steps`,
);
console.log('workers  tokens/s  s/step  compute s  all-reduce s (incl. waiting)');
for (const r of [one, many])
  console.log(
    `${String(r.workers).padStart(7)}  ${f(r.tokensPerSecond, 0).padStart(8)}  ${f(r.stepSeconds).padStart(6)}  ${f(r.computeSeconds).padStart(9)}  ${f(r.allReduceSeconds, 3).padStart(12)}`,
  );
console.log(
  `efficiency: tokens/s with ${workers} workers / (${workers} x 1 worker) = ${efficiency.toFixed(2)}`,
);
const mb = (b) => `${(b / 1e6).toFixed(2)} MB`;
console.log(
  `bytes sent per rank per step (ring, fp32, computed): LoRA ${mb(report.bytesPerRankPerStep.lora)} vs full fine-tuning ${mb(report.bytesPerRankPerStep.full)} (${report.bytesPerRankPerStep.ratio.toFixed(0)}x less)`,
);
