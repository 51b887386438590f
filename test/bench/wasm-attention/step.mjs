#!/usr/bin/env node
// What the SIMD matmul kernel changes in a real forward + backward: the
// default model (packages/models/pretrained/default) with LoRA r 8 on c_attn,
// one micro-batch of B x 128 tokens, timed with the project's BatchMatMul
// ("project": the SIMD kernel for batched and 2-D products) and with the
// routing before the kernel ("before": every product on tfjs-wasm's own
// kernel, after an explicit transpose for a flag), the two
// alternating step by step in one process. Also prints both losses (equal up
// to float summation order).
//   pnpm build && node test/bench/wasm-attention/step.mjs [--batch 8] [--steps 6]
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { alternate, stepArgs, tokensPerSecond } from '../common/ab-step.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const { B, steps, T } = stepArgs('test/bench/wasm-attention/step.mjs');

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
function transposed(x, flag, backend) {
  if (!flag) return x;
  const rank = x.shape.length;
  const perm = [...Array(rank).keys()];
  [perm[rank - 2], perm[rank - 1]] = [rank - 1, rank - 2];
  return transpose({ inputs: { x }, backend, attrs: { perm } });
}
/** The routing before the SIMD kernel: tfjs's own kernel for every product, after explicit transposes. */
function beforeKernel({ inputs, backend, attrs }) {
  const { a, b } = inputs;
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
const install = (config) => () => {
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel(config);
};
const step = async () =>
  (await lossAndGradsAsync(params, () => tokenNllSum(model, batch, { training: true }))).loss;
const { project: p, before: b } = await alternate(
  { project: install(project), before: install({ ...project, kernelFunc: beforeKernel }) },
  step,
  steps,
  install(project),
);
console.log(
  `default model, LoRA r 8 on c_attn, forward + backward of ${B} x ${T} tokens on wasm, median of ${steps}:`,
);
console.log(
  `  project (SIMD matmul)           ${p.ms.toFixed(0)} ms  ${tokensPerSecond(B, T, p.ms)} tokens/s`,
);
console.log(
  `  before (tfjs's, transposes)     ${b.ms.toFixed(0)} ms  ${tokensPerSecond(B, T, b.ms)} tokens/s`,
);
console.log(`  speed-up ${(b.ms / p.ms).toFixed(2)}x; token NLL sum ${p.loss} vs ${b.loss}`);
