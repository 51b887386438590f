#!/usr/bin/env node
// What the SIMD step kernels change in a real forward + backward on wasm:
// the CPU-step bench's "tiny" shape (GPT-2, 4 layers x 256, 8 heads, vocab
// 4096, context 128; random weights; LoRA r 8 on c_attn; B x 128 tokens),
// timed with the registered step kernels ("simd": softmax cross-entropy,
// gelu_new and LayerNorm on the SIMD128 code) and with their TypeScript
// kernels on the same backend ("ts": each config's `host`), the two
// alternating step by step in one process. Prints both token NLL sums.
//   pnpm build && node test/bench/wasm-step-kernels/step.mjs [--batch 8] [--steps 6]
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { alternate, stepArgs, tokensPerSecond } from '../common/ab-step.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const { B, steps, T } = stepArgs('test/bench/wasm-step-kernels/step.mjs');

const { tf, TrainableParameters, lossAndGradsAsync, useBackend } = await import(
  join(ROOT, 'packages/core/dist/src/index.js')
);
const { Gpt2Model, randomGpt2Weights, addLora, tokenNllSum } = await import(
  join(ROOT, 'packages/models/dist/src/index.js')
);
await useBackend('wasm');
const config = {
  vocabSize: 4096,
  nPositions: T,
  nEmbd: 256,
  nLayer: 4,
  nHead: 8,
  nInner: null,
  layerNormEpsilon: 1e-5,
  embdPdrop: 0,
  attnPdrop: 0,
  residPdrop: 0,
};
const model = new Gpt2Model(config, randomGpt2Weights(config, 1));
const lora = { r: 8, alpha: 16, dropout: 0, rslora: false };
const layers = await addLora(model.linears(), 'default', lora, { kind: 'kaiming' }, ['c_attn'], 0);
const params = TrainableParameters.fromLoraLayers(layers);
const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % config.vocabSize);
const batch = { ids, labels: ids.slice(), batchSize: B, seqLen: T };

const NAMES = [
  'LoraFleetSoftmaxXent',
  'LoraFleetSoftmaxXentGrad',
  'LoraFleetGeluNew',
  'LoraFleetGeluNewGrad',
  'LoraFleetLayerNorm',
  'LoraFleetLayerNormGrad',
];
const registered = NAMES.map((name) => tf.getKernel(name, 'wasm'));
if (registered.some((config) => typeof config?.host !== 'function')) {
  console.error("the step kernels on wasm have no TypeScript 'host': rebuild packages/core");
  process.exit(1);
}
const variants = {
  simd: registered.map((c) => ({ ...c })),
  ts: registered.map((c) => ({ ...c, kernelFunc: c.host })),
};
function use(configs) {
  for (const c of configs) {
    tf.unregisterKernel(c.kernelName, 'wasm');
    tf.registerKernel(c);
  }
}

const step = async () =>
  (await lossAndGradsAsync(params, () => tokenNllSum(model, batch, { training: true }))).loss;
const { simd, ts } = await alternate(
  { simd: () => use(variants.simd), ts: () => use(variants.ts) },
  step,
  steps,
  () => use(variants.simd),
);
console.log(
  `tiny GPT-2 (4 x 256, vocab 4096), LoRA r 8 on c_attn, forward + backward of ${B} x ${T} tokens on wasm, median of ${steps}:`,
);
console.log(
  `  SIMD step kernels        ${simd.ms.toFixed(0)} ms  ${tokensPerSecond(B, T, simd.ms)} tokens/s`,
);
console.log(
  `  TypeScript step kernels  ${ts.ms.toFixed(0)} ms  ${tokensPerSecond(B, T, ts.ms)} tokens/s`,
);
console.log(
  `  speed-up ${(ts.ms / simd.ms).toFixed(2)}x; token NLL sum ${simd.loss} vs ${ts.loss}`,
);
