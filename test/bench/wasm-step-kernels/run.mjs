#!/usr/bin/env node
// The wasm backend's fused step kernels, two ways in one process on the same
// tensors: the SIMD128 code (packages/core/assembly/softmax-xent.ts, with
// TRL's token metrics (LoraFleetTokenStats) beside the cross-entropy,
// gelu-new.ts, layer-norm.ts; what the registered kernel runs) and the TypeScript kernel
// over the same heap (the registered config's `host`, the cpu backend's
// code). The two are interleaved repeat by repeat, so a loaded machine slows
// them alike; it prints the median and the best (fastest) ms per call of
// each, and TypeScript / SIMD as a ratio.
//   pnpm build && node test/bench/wasm-step-kernels/run.mjs [--repeats 20]
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  console.log(
    'usage: node test/bench/wasm-step-kernels/run.mjs [--repeats N]\n' +
      '  --repeats N   timed repeats per kernel after one warm-up (default 20)\n' +
      'Shapes: the CPU-step bench\'s "tiny" step (8 x 128 tokens, vocab 4096, width 256:\n' +
      'softmax cross-entropy and the token metrics on [1024, 4096], gelu_new on [1024, 1024], LayerNorm on\n' +
      '[1024, 256]) and vocab 257.\n' +
      'Needs a build first (pnpm build): it imports packages/core/dist.',
  );
  process.exit(0);
}
const i = argv.indexOf('--repeats');
const repeats = Number(i >= 0 ? argv[i + 1] : '20');
if (!Number.isInteger(repeats) || repeats < 1) {
  console.error(`--repeats must be an integer >= 1, got ${argv[i + 1]}`);
  process.exit(2);
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const { tf } = await import(join(root, 'packages/core/dist/src/index.js'));
await tf.setBackend('wasm');
await tf.ready();
const backend = tf.backend();

function kernel(name) {
  const config = tf.getKernel(name, 'wasm');
  if (typeof config?.host !== 'function') {
    console.error(`${name} on wasm has no TypeScript 'host' kernel: rebuild packages/core`);
    process.exit(1);
  }
  return config;
}

/** [label, kernel name, inputs] of every case; inputs are made once and reused. */
function cases() {
  const xent = (N, V) => {
    const logits = tf.randomNormal([N, V], 0, 3);
    const labels = tf.tensor1d(
      Array.from({ length: N }, (_, n) => (n % 8 === 7 ? -100 : (n * 7919) % V)),
      'int32',
    );
    const [, lse] = tf.engine().runKernel('LoraFleetSoftmaxXent', { logits, labels });
    const dnll = tf.onesLike(lse);
    return [
      [`softmax xent fwd [${N}, ${V}]`, 'LoraFleetSoftmaxXent', { logits, labels }],
      [`softmax xent bwd [${N}, ${V}]`, 'LoraFleetSoftmaxXentGrad', { logits, labels, lse, dnll }],
      [`token stats [${N}, ${V}]`, 'LoraFleetTokenStats', { logits, labels }],
    ];
  };
  const x = tf.randomNormal([1024, 1024], 0, 2);
  const dy = tf.randomNormal([1024, 1024]);
  const h = tf.randomNormal([1024, 256], 0, 2);
  const dh = tf.randomNormal([1024, 256]);
  const gamma = tf.randomNormal([256]);
  const beta = tf.randomNormal([256]);
  const [, mean, rstd] = tf
    .engine()
    .runKernel('LoraFleetLayerNorm', { x: h, gamma, beta }, { eps: 1e-5 });
  return [
    ...xent(1024, 4096),
    ...xent(1024, 257),
    ['gelu_new fwd [1024, 1024]', 'LoraFleetGeluNew', { x }],
    ['gelu_new bwd [1024, 1024]', 'LoraFleetGeluNewGrad', { x, dy }],
    ['LayerNorm fwd [1024, 256]', 'LoraFleetLayerNorm', { x: h, gamma, beta }],
    ['LayerNorm bwd [1024, 256]', 'LoraFleetLayerNormGrad', { x: h, gamma, mean, rstd, dy: dh }],
  ];
}

/** ms of one call; the outputs are freed. */
function timeOnce(f, inputs) {
  const t = performance.now();
  const out = f({ inputs, backend, attrs: { eps: 1e-5 } });
  const ms = performance.now() - t;
  for (const info of [out].flat()) backend.disposeData(info.dataId);
  return ms;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pad = (s, w) => String(s).padStart(w);
console.log(
  `tfjs-wasm ${tf.version.tfjs}: the step kernels, TypeScript vs SIMD128, ${repeats} repeats, ms per call`,
);
console.log(
  `${'kernel'.padEnd(30)} ${pad('TS med', 8)} ${pad('SIMD med', 9)} ${pad('ratio', 6)}   ${pad('TS best', 8)} ${pad('SIMD best', 9)} ${pad('ratio', 6)}`,
);
for (const [label, name, inputs] of cases()) {
  const config = kernel(name);
  const variants = { ts: config.host, simd: config.kernelFunc };
  const times = { ts: [], simd: [] };
  for (const f of Object.values(variants)) timeOnce(f, inputs);
  for (let r = 0; r < repeats; r++) {
    for (const [v, f] of Object.entries(variants)) times[v].push(timeOnce(f, inputs));
  }
  const med = { ts: median(times.ts), simd: median(times.simd) };
  const best = { ts: Math.min(...times.ts), simd: Math.min(...times.simd) };
  console.log(
    `${label.padEnd(30)} ${pad(med.ts.toFixed(2), 8)} ${pad(med.simd.toFixed(2), 9)} ${pad((med.ts / med.simd).toFixed(1) + 'x', 6)}   ${pad(best.ts.toFixed(2), 8)} ${pad(best.simd.toFixed(2), 9)} ${pad((best.ts / best.simd).toFixed(1) + 'x', 6)}`,
  );
}
