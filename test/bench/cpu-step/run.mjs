#!/usr/bin/env node
// The CPU (wasm) LoRA step against PyTorch + OpenBLAS on one thread and
// against the wasm matmul roofline, all in one run, with a per-kernel
// profile of the project's step.
//   pnpm build && node test/bench/cpu-step/run.mjs [--steps 10] [--warmup 3]
// Each measurement runs in its own child process, one after the other: the
// project's step (project-step.mjs: TrainingStep from packages/worker, the
// step every worker runs), the matmul roofline (roofline.mjs) and PyTorch
// (torch_step.py) under its default allocator and under a steady one
// (MALLOC_MMAP_THRESHOLD_ = MALLOC_TRIM_THRESHOLD_ = 4 GiB, see
// ../shared/BENCHMARKS.md).
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SHAPES, flopsPerToken } from './shapes.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const USAGE = `usage: node test/bench/cpu-step/run.mjs [options]   (after pnpm build)
  --shapes LIST   comma-separated, of: ${Object.keys(SHAPES).join(', ')} (default: all)
  --steps N       timed steps per measurement, median reported (default 10)
  --warmup N      untimed steps first (default 3)
  --python PATH   a python3 that imports torch (default /usr/bin/python3: Debian's python3-torch)
  --no-torch      skip PyTorch (no ratio is printed then)
  --top N         kernels shown in each profile (default 12)
  --baseline DIR  also measure the step of another built checkout (e.g. main's code) in the
                  same run, beside this one: a before/after that shares its peers and its load
  --rounds N      repeat every measurement N times, interleaved; figures and ratios are
                  the median over rounds (default 1)
  --json FILE     also write every figure as JSON
  -h, --help      show this help`;

const { values: opts } = parseArgs({
  options: {
    shapes: { type: 'string', default: Object.keys(SHAPES).join(',') },
    steps: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    python: { type: 'string', default: '/usr/bin/python3' },
    'no-torch': { type: 'boolean', default: false },
    top: { type: 'string', default: '12' },
    json: { type: 'string' },
    baseline: { type: 'string' },
    rounds: { type: 'string', default: '1' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}
const count = (name, min) => {
  const n = Number(opts[name]);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be an integer >= ${min}, got ${opts[name]}\n${USAGE}`);
    process.exit(2);
  }
  return n;
};
const steps = count('steps', 1);
const warmup = count('warmup', 0);
const top = count('top', 1);
const rounds = count('rounds', 1);
if (opts.baseline && !existsSync(join(opts.baseline, 'packages/worker/dist/src/index.js'))) {
  console.error(
    `--baseline ${opts.baseline}: no built packages there (run pnpm build in it first)`,
  );
  process.exit(2);
}
const shapes = opts.shapes.split(',').map((s) => s.trim());
for (const s of shapes) {
  if (!SHAPES[s]) {
    console.error(`--shapes: unknown shape "${s}" (known: ${Object.keys(SHAPES).join(', ')})`);
    process.exit(2);
  }
}

/** Runs a child and returns the JSON object on its last stdout line. */
function child(command, args, env = {}) {
  const r = spawnSync(command, args, {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) {
    console.error(`${command} ${args.join(' ')} failed (status ${r.status}):\n${r.stderr}`);
    process.exit(1);
  }
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

const STEADY = { MALLOC_MMAP_THRESHOLD_: '4294967296', MALLOC_TRIM_THRESHOLD_: '4294967296' };
const torch = (shape, env) =>
  child(
    opts.python,
    [join(here, 'torch_step.py'), JSON.stringify(SHAPES[shape]), String(steps), String(warmup)],
    env,
  );

console.log(
  `cpu-step: ${steps} timed steps after ${warmup} warm-ups per measurement, ${rounds} round(s)` +
    (opts.baseline ? `; baseline: ${opts.baseline}` : ''),
);
const median = (xs) => {
  const s = xs.filter((x) => x !== null && x !== undefined).sort((a, b) => a - b);
  return s.length === 0 ? null : s[Math.floor(s.length / 2)];
};
const projectStep = (shape, root) =>
  child(process.execPath, [
    join(here, 'project-step.mjs'),
    shape,
    String(steps),
    String(warmup),
    ...(root ? [root] : []),
  ]);
/** Per round and shape: every measurement, one after the other. */
const measured = [];
for (let round = 0; round < rounds; round++) {
  const roofline = child(process.execPath, [
    join(here, 'roofline.mjs'),
    String(Math.max(steps, 5)),
  ]);
  for (const shape of shapes) {
    measured.push({
      round,
      shape,
      rooflineGflops: Math.max(
        roofline.square1024,
        roofline.step1024x256x1024,
        roofline.xnnpackSquare1024,
        roofline.xnnpackStep1024x256x1024,
      ),
      roofline,
      project: projectStep(shape),
      baseline: opts.baseline ? projectStep(shape, opts.baseline) : null,
      torchDefault: opts['no-torch'] ? null : torch(shape, {}),
      torchSteady: opts['no-torch'] ? null : torch(shape, STEADY),
    });
  }
}

const f0 = (x) => (x === null || x === undefined ? '-' : x.toFixed(0));
const f3 = (x) => (x === null || x === undefined ? '-' : x.toFixed(3));
const f1 = (x) => x.toFixed(1);
const roofs = measured.map((m) => m.roofline);
console.log(
  `\nwasm matmul roofline (2-D matmul, one core, median over rounds): the project's SIMD kernel ` +
    `1024^3 ${f1(median(roofs.map((r) => r.square1024)))} GFLOP/s, [1024,256]x[256,1024] ` +
    `${f1(median(roofs.map((r) => r.step1024x256x1024)))} GFLOP/s; tfjs-wasm's XNNPACK ` +
    `${f1(median(roofs.map((r) => r.xnnpackSquare1024)))} and ` +
    `${f1(median(roofs.map((r) => r.xnnpackStep1024x256x1024)))} GFLOP/s; the roofline takes the fastest`,
);
const peer = measured.find((m) => m.torchSteady)?.torchSteady;
if (peer)
  console.log(`PyTorch ${peer.torch}, ${peer.threads} thread, BLAS: ${peer.blas.join(', ')}`);
console.log(
  '\n| shape | step | MFLOP/token | tokens/s | PyTorch 1 thread tok/s (steady / default malloc) | ratio vs steady | ratio vs default | roofline tok/s | fraction of roofline |',
);
console.log('|---|---|---|---|---|---|---|---|---|');
const results = [];
for (const shape of shapes) {
  const rows = measured.filter((m) => m.shape === shape);
  const flops = flopsPerToken(SHAPES[shape]);
  const steps = [['this checkout', (m) => m.project]];
  if (opts.baseline) steps.unshift(['baseline', (m) => m.baseline]);
  for (const [label, pick] of steps) {
    const tps = (m) => pick(m).tokensPerSecond;
    const row = {
      shape,
      step: label,
      tokensPerSecond: median(rows.map(tps)),
      torchSteady: median(rows.map((m) => m.torchSteady?.tokensPerSecond)),
      torchDefault: median(rows.map((m) => m.torchDefault?.tokensPerSecond)),
      ratioSteady: median(rows.map((m) => m.torchSteady && tps(m) / m.torchSteady.tokensPerSecond)),
      ratioDefault: median(
        rows.map((m) => m.torchDefault && tps(m) / m.torchDefault.tokensPerSecond),
      ),
      rooflineTps: median(rows.map((m) => (m.rooflineGflops * 1e9) / flops)),
      fraction: median(rows.map((m) => tps(m) / ((m.rooflineGflops * 1e9) / flops))),
    };
    results.push(row);
    console.log(
      `| ${shape} | ${label} | ${(flops / 1e6).toFixed(1)} | ${f0(row.tokensPerSecond)} | ${f0(row.torchSteady)} / ${f0(row.torchDefault)} | ${f3(row.ratioSteady)} | ${f3(row.ratioDefault)} | ${f0(row.rooflineTps)} | ${f3(row.fraction)} |`,
    );
  }
  if (opts.baseline) {
    const speedup = median(rows.map((m) => m.project.tokensPerSecond / m.baseline.tokensPerSecond));
    console.log(`| ${shape} | this / baseline | | ${speedup.toFixed(2)}x | | | | | |`);
  }
}
for (const m of measured.filter((x) => x.round === rounds - 1)) {
  if (m.baseline) printProfile(`${m.shape}, baseline`, m.baseline);
  printProfile(`${m.shape}, this checkout`, m.project);
}

/** The top kernels of the profiled step and their share of it. */
function printProfile(shape, project) {
  const { stepMs, kernels, kernelCalls, peakBytes } = project.profile;
  const inKernels = kernels.reduce((a, k) => a + k.ms, 0);
  console.log(
    `\nprofile, ${shape}: one profiled step ${stepMs.toFixed(0)} ms (unprofiled median ${project.medianMs.toFixed(0)} ms), ` +
      `${kernelCalls} kernel calls, peak ${(peakBytes / 2 ** 20).toFixed(0)} MiB of tensors, ${project.leakedTensors} tensors left after the step`,
  );
  console.log('| kernel | calls | ms | share of step |');
  console.log('|---|---|---|---|');
  for (const k of kernels.slice(0, top)) {
    console.log(
      `| ${k.name} | ${k.calls} | ${k.ms.toFixed(1)} | ${((100 * k.ms) / stepMs).toFixed(1)}% |`,
    );
  }
  const rest = kernels.slice(top).reduce((a, k) => a + k.ms, 0);
  console.log(
    `| ${kernels.length - top > 0 ? kernels.length - top : 0} other kernels | | ${rest.toFixed(1)} | ${((100 * rest) / stepMs).toFixed(1)}% |`,
  );
  const outside = stepMs - inKernels;
  console.log(
    `| outside kernels (tape, JS, AdamW, reads) | | ${outside.toFixed(1)} | ${((100 * outside) / stepMs).toFixed(1)}% |`,
  );
}

if (opts.json) writeFileSync(opts.json, JSON.stringify({ results, measured }, null, 2));
