#!/usr/bin/env node
// --base-dtype: what storing the frozen W in half precision saves and costs on
// the default model (packages/models/pretrained/default), f32 vs bf16 vs f16 vs nf4
// in one process: bytes of the base (tf.memory(); on webgpu also the GPU
// buffer bytes tfjs holds), the peak bytes of one LoRA training step
// (tf.profile), the eval loss of the base and after N LoRA steps.
//   node test/bench/base-dtype/run.mjs [--backend wasm|webgpu] [--steps 10]
// Needs the build (pnpm build). webgpu without a GPU: VK_ICD_FILENAMES=
// /usr/lib/chromium/vk_swiftshader_icd.json (SwiftShader; slow, correct).
// The text: this repository's README.md (held out: its last quarter).
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  TrainableParameters,
  lossAndGradsAsync,
  releaseWebGpu,
  tf,
  useBackend,
} from '../../../packages/core/dist/src/index.js';
import {
  IGNORE_INDEX,
  addLora,
  evaluateLoss,
  loadModel,
  storeBasesAs,
  tokenNllSum,
} from '../../../packages/models/dist/src/index.js';
import { TrainingStep } from '../../../packages/worker/dist/src/index.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const { values: opt } = parseArgs({
  options: {
    backend: { type: 'string', default: 'wasm' },
    steps: { type: 'string', default: '10' },
    'batch-size': { type: 'string', default: '4' },
    'seq-len': { type: 'string', default: '128' },
    'eval-batches': { type: 'string', default: '1000' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  console.log(
    'usage: node test/bench/base-dtype/run.mjs [--backend wasm|webgpu] [--steps 10] [--batch-size 4] [--seq-len 128] [--eval-batches N]',
  );
  process.exit(0);
}
const steps = Number(opt.steps);
const B = Number(opt['batch-size']);
const T = Number(opt['seq-len']);
const MODEL = join(ROOT, 'packages/models/pretrained/default');

/** Rows of T tokens, batched B at a time. */
function batches(ids) {
  const out = [];
  for (let s = 0; s + B * T <= ids.length; s += B * T) {
    const chunk = Int32Array.from(ids.slice(s, s + B * T));
    const labels = chunk.slice();
    for (let b = 0; b < B; b++) labels[b * T] = IGNORE_INDEX; // no target for a row's first token
    out.push({ ids: chunk, labels, batchSize: B, seqLen: T });
  }
  return out;
}

async function measure(dtype, text) {
  await useBackend(opt.backend);
  const before = tf.memory().numBytes;
  const { model, tokenizer } = await loadModel(MODEL);
  const ids = tokenizer.encode(text);
  const cut = Math.floor(ids.length * 0.75);
  const train = batches(ids.slice(0, cut));
  const held = batches(ids.slice(cut)).slice(0, Number(opt['eval-batches']));
  const f32Bytes = tf.memory().numBytes - before;
  await storeBasesAs(model, dtype);
  const modelBytes = tf.memory().numBytes - before;
  const base = (await evaluateLoss(model, held)).loss;
  // After a forward pass: webgpu uploads tensors on first use.
  const mem = tf.memory();
  const layers = await addLora(
    model.linears(),
    'default',
    { r: 8, alpha: 16, dropout: 0, rslora: false },
    { kind: 'kaiming' },
    ['c_attn', 'c_proj', 'c_fc'],
    0,
  );
  const params = TrainableParameters.fromLoraLayers(layers);
  // Before any step: TrainingStep reads the parameters synchronously while they are still on the CPU.
  const step = new TrainingStep(model, params, {
    optimizer: { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 },
    schedule: { kind: 'constant' },
    maxGradNorm: 1,
    seed: 0,
  });
  const profile = await tf.profile(async () => {
    await lossAndGradsAsync(params, () => tokenNllSum(model, train[0], { training: true }));
  });
  const losses = [];
  for (let s = 0; s < steps; s++) losses.push((await step.run([train[s % train.length]])).loss);
  const tuned = (await evaluateLoss(model, held)).loss;
  model.dispose();
  return {
    dtype,
    modelBytes,
    savedBytes: f32Bytes - modelBytes,
    gpuBytes: mem.numBytesInGPU ?? null,
    gpuBytesAllocated: mem.numBytesAllocatedInGPU ?? null,
    peakStepBytes: profile.peakBytes,
    evalLossBase: base,
    evalLossAfter: tuned,
    lastTrainLoss: losses[losses.length - 1],
    heldTokens: held.length * B * (T - 1),
  };
}

const text = readFileSync(join(ROOT, 'README.md'), 'utf8');
const rows = [];
for (const dtype of ['f32', 'bf16', 'f16', 'nf4']) rows.push(await measure(dtype, text));
const ref = rows[0];
const mib = (n) => (n / 2 ** 20).toFixed(2);
console.log(
  `base-dtype on ${opt.backend}, default model, ${steps} LoRA steps (r 8, c_attn c_proj c_fc), batch ${B} x ${T}, held-out ${ref.heldTokens} tokens`,
);
for (const r of rows) {
  const gpu =
    r.gpuBytes === null
      ? ''
      : `, GPU buffers in use ${mib(r.gpuBytes)} MiB (${mib(ref.gpuBytes - r.gpuBytes)} less than f32; pool ${mib(r.gpuBytesAllocated)} MiB)`;
  console.log(
    `${r.dtype.padEnd(4)} model tensors ${mib(r.modelBytes)} MiB (saved ${mib(r.savedBytes)} MiB)${gpu}, ` +
      `step peak ${mib(r.peakStepBytes)} MiB; eval loss base ${r.evalLossBase.toFixed(5)} ` +
      `(${(r.evalLossBase - ref.evalLossBase).toExponential(2)} vs f32), after ${steps} steps ` +
      `${r.evalLossAfter.toFixed(5)} (${(r.evalLossAfter - ref.evalLossAfter).toExponential(2)} vs f32)`,
  );
}
console.log(`JSON ${JSON.stringify(rows)}`);
if (opt.backend === 'webgpu') {
  await useBackend('wasm');
  releaseWebGpu();
}
