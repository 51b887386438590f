#!/usr/bin/env node
// Dropout on webgpu: the project's counter-based dropout (ops/dropout.ts: the
// mask drawn in the kernel) against tfjs's tf.dropout (the mask drawn by
// seedrandom on the CPU, then uploaded), the previous implementation, in the
// same run, at the LoRA step's shapes of GPT-2 small with 8 x 512 tokens: a
// LoRA input / residual [4096, 768] and attention probabilities
// [2, 12, 512, 512] (2 of the 8 sequences). Dawn's null adapter by default: no shader runs, so the
// figures are the host's cost of one call (on a GPU the kernel itself is a few
// microseconds, one pass over memory).
//   pnpm build && node test/bench/webgpu-kernels/dropout.mjs [--repeats N] [--gpu]
import { parseArgs } from 'node:util';
import {
  releaseWebGpu,
  seededDropout,
  tf,
  useBackend,
  webGpuErrors,
} from '../../../packages/core/dist/src/index.js';

const { values: opt } = parseArgs({
  options: {
    repeats: { type: 'string', default: '5' },
    gpu: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (opt.help) {
  console.log(`usage: node test/bench/webgpu-kernels/dropout.mjs [--repeats N] [--gpu]
  --repeats N  timed calls per variant (median; default 5), after one warm-up
  --gpu        the machine's adapter instead of Dawn's null adapter`);
  process.exit(0);
}
const repeats = Number(opt.repeats);
await useBackend('webgpu', opt.gpu ? {} : { dawnFlags: ['backend=null'] });
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/** Median ms of one call, from the call to its output's GPU data being settled. */
async function time(fn) {
  const ms = [];
  for (let i = 0; i <= repeats; i++) {
    const start = performance.now();
    const y = fn(i);
    await y.data(); // waits for the queue (the null adapter runs nothing)
    if (i > 0) ms.push(performance.now() - start);
    y.dispose();
  }
  return median(ms);
}

console.log(
  `dropout on webgpu (${opt.gpu ? 'this GPU' : "Dawn's null adapter: host cost only"}), median of ${repeats}`,
);
console.log('shape                  elements   tf.dropout ms  project ms   ratio');
// Attention probabilities of 2 sequences: the null adapter holds ~250 MB, and tf.dropout
// makes four tensors of the input's size.
for (const shape of [
  [4096, 768],
  [2, 12, 512, 512],
]) {
  const x = tf.zeros(shape);
  const stock = await time((i) => tf.dropout(x, 0.1, undefined, i));
  const ours = await time((i) => seededDropout(x, 0.1, i));
  x.dispose();
  const n = shape.reduce((a, b) => a * b, 1);
  console.log(
    `${JSON.stringify(shape).padEnd(22)} ${String(n).padStart(9)} ${stock.toFixed(1).padStart(14)} ${ours.toFixed(1).padStart(11)} ${(stock / ours).toFixed(1).padStart(7)}x`,
  );
}
const errors = [...webGpuErrors()];
await useBackend('cpu');
releaseWebGpu();
if (errors.length > 0) throw new Error(`WebGPU errors: ${errors.join('; ')}`);
