#!/usr/bin/env node
// What the SIMD batched matmul changes in a real forward + backward: the
// default model (packages/models/pretrained/default) with LoRA r 8 on c_attn,
// one micro-batch of B x 128 tokens, timed with the project's BatchMatMul
// ("project") and with the routing it had before the kernel ("before":
// batched products on stock tfjs-wasm, after an explicit transpose), the two
// alternating step by step in one process. Also prints both losses (equal up
// to float summation order).
//   pnpm build && node test/bench/wasm-attention/step.mjs [--batch 8] [--steps 6]
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const { values: opt } = parseArgs({
  options: {
    batch: { type: 'string', default: '8' },
    steps: { type: 'string', default: '6' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  console.log(
    'usage: node test/bench/wasm-attention/step.mjs [--batch 8] [--steps 6]\n' +
      '  --batch B   rows of 128 tokens per forward + backward (default 8)\n' +
      '  --steps N   timed steps per variant after one warm-up each (default 6)\n' +
      'Needs a build first (pnpm build): it imports packages/*/dist.',
  );
  process.exit(0);
}
const B = Number(opt.batch);
const steps = Number(opt.steps);
if (!Number.isInteger(B) || B < 1 || !Number.isInteger(steps) || steps < 1) {
  console.error(`--batch and --steps must be integers >= 1, got ${opt.batch} and ${opt.steps}`);
  process.exit(2);
}
const T = 128;

const { tf, TrainableParameters, lossAndGradsAsync, useBackend } = await import(
  join(ROOT, 'packages/core/dist/src/index.js')
);
const { loadModel, addLora, tokenNllSum } = await import(
  join(ROOT, 'packages/models/dist/src/index.js')
);
await useBackend('wasm');
const { model } = await loadModel(join(ROOT, 'packages/models/pretrained/default'));
const lora = { r: 8, alpha: 16, dropout: 0, rslora: false };
const layers = await addLora(model.linears(), 'default', lora, { kind: 'kaiming' }, ['c_attn'], 0);
const params = TrainableParameters.fromLoraLayers(layers);
const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % 256);
const batch = { ids, labels: ids.slice(), batchSize: B, seqLen: T };

const project = tf.getKernel('BatchMatMul', 'wasm');
if (!project?.stock) {
  console.error("BatchMatMul on wasm is not the project's wrapper: rebuild packages/core");
  process.exit(1);
}
const transpose = tf.getKernel('Transpose', 'wasm').kernelFunc;
const batchOf = (x) => x.shape.slice(0, -2).reduce((p, q) => p * q, 1);
function transposed(x, flag, backend) {
  if (!flag) return x;
  const rank = x.shape.length;
  const perm = [...Array(rank).keys()];
  [perm[rank - 2], perm[rank - 1]] = [rank - 1, rank - 2];
  return transpose({ inputs: { x }, backend, attrs: { perm } });
}
/** The routing before the SIMD kernel: batched products on the stock kernel, no flags. */
function beforeKernel({ inputs, backend, attrs }) {
  const { a, b } = inputs;
  if (batchOf(a) <= 1 && batchOf(b) <= 1) return project.kernelFunc({ inputs, backend, attrs });
  const a2 = transposed(a, attrs.transposeA, backend);
  const b2 = transposed(b, attrs.transposeB, backend);
  try {
    const flags = { transposeA: false, transposeB: false };
    return project.stock({ inputs: { a: a2, b: b2 }, backend, attrs: { ...attrs, ...flags } });
  } finally {
    if (a2 !== a) backend.disposeData(a2.dataId);
    if (b2 !== b) backend.disposeData(b2.dataId);
  }
}
const variants = { project: { ...project }, before: { ...project, kernelFunc: beforeKernel } };

const times = { project: [], before: [] };
const losses = {};
for (let s = 0; s <= steps; s++) {
  for (const [name, config] of Object.entries(variants)) {
    tf.unregisterKernel('BatchMatMul', 'wasm');
    tf.registerKernel(config);
    const t = performance.now();
    const { loss } = await lossAndGradsAsync(params, () =>
      tokenNllSum(model, batch, { training: true }),
    );
    if (s > 0) times[name].push(performance.now() - t); // step 0 warms up
    losses[name] = loss;
  }
}
tf.unregisterKernel('BatchMatMul', 'wasm');
tf.registerKernel(project);
const median = (xs) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];
const [p, b] = [median(times.project), median(times.before)];
console.log(
  `default model, LoRA r 8 on c_attn, forward + backward of ${B} x ${T} tokens on wasm, median of ${steps}:`,
);
console.log(
  `  project (SIMD batched matmul)  ${p.toFixed(0)} ms  ${(((B * T) / p) * 1000).toFixed(0)} tokens/s`,
);
console.log(
  `  before (stock for batch > 1)   ${b.toFixed(0)} ms  ${(((B * T) / b) * 1000).toFixed(0)} tokens/s`,
);
console.log(
  `  speed-up ${(b / p).toFixed(2)}x; token NLL sum ${losses.project} vs ${losses.before}`,
);
