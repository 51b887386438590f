// One child of run.mjs: the project's own LoRA step (TrainingStep from
// packages/worker, the step every worker runs) on one shape, on wasm.
// Prints one JSON line: tokens/s (median of the timed steps), the step's
// milliseconds, and a per-kernel profile of one more step (tf.profile).
//   node project-step.mjs SHAPE STEPS WARMUP [ROOT]
// ROOT: the checkout whose built packages are measured (default: this one;
// run.mjs --baseline passes another, e.g. main's code, for a same-run before/after).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SHAPES } from './shapes.mjs';

const root = process.argv[5] ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const dist = (pkg) => join(root, 'packages', pkg, 'dist/src/index.js');
const core = await import(dist('core'));
const models = await import(dist('models'));
const worker = await import(dist('worker'));
const { tf } = core;
// threads.mjs: tfjs-wasm's multithreaded build with this many threads.
const threads = Number(process.env.CPU_STEP_WASM_THREADS ?? 0);
if (threads > 0) {
  const { enableWasmThreads } = await import('./wasm-threads.mjs');
  enableWasmThreads(tf, root, threads);
}

const [shapeName, stepsArg, warmupArg] = process.argv.slice(2, 5);
const shape = SHAPES[shapeName];
const steps = Number(stepsArg);
const warmup = Number(warmupArg);
await core.useBackend('wasm');

const model = shape.family === 'llama' ? llamaModel() : gpt2Model();
const { targets, ...settings } = shape.lora;
const layers = await models.addLora(
  model.linears(),
  worker.ADAPTER_NAME,
  settings,
  { kind: 'kaiming' },
  targets,
  0,
);
const params = core.TrainableParameters.fromLoraLayers(layers);
// B = 0 at init makes the first steps' gradients of A zero; a normal start.
const step = new worker.TrainingStep(model, params, {
  optimizer: { ...core.ADAMW_DEFAULTS, lr: 1e-3 },
  schedule: { kind: 'constant' },
  maxGradNorm: 1,
  seed: 0,
});

/** GPT-2 of the shape (Conv1D, LayerNorm, gelu_new, learned positions, tied head). */
function gpt2Model() {
  const config = {
    vocabSize: shape.vocab,
    nPositions: shape.context,
    nEmbd: shape.width,
    nLayer: shape.layers,
    nHead: shape.heads,
    nInner: null,
    layerNormEpsilon: 1e-5,
    embdPdrop: 0,
    attnPdrop: 0,
    residPdrop: 0,
  };
  return new models.Gpt2Model(config, models.randomGpt2Weights(config, 1));
}

/** A Llama of the shape (RMSNorm, RoPE, grouped-query attention, SwiGLU, tied head). */
function llamaModel() {
  const config = models.modelConfigFromJson(
    {
      model_type: 'llama',
      vocab_size: shape.vocab,
      hidden_size: shape.width,
      intermediate_size: shape.intermediate,
      num_hidden_layers: shape.layers,
      num_attention_heads: shape.heads,
      num_key_value_heads: shape.kvHeads,
      max_position_embeddings: shape.context,
      rms_norm_eps: 1e-5,
      tie_word_embeddings: true,
    },
    'cpu-step llama',
  );
  return models.buildModel(config, models.randomLlamaWeights(config.arch, 1));
}

const { batch: B, seqLen: T } = shape;
let rng = 12345;
const nextId = () => {
  rng = (Math.imul(rng, 1103515245) + 12345) >>> 0;
  return (rng >>> 8) % shape.vocab;
};
/** A fresh batch of random tokens per step (labels = ids, shifted by the loss). */
function batch() {
  const ids = Int32Array.from({ length: B * T }, nextId);
  return [{ ids, labels: ids.slice(), batchSize: B, seqLen: T }];
}

const times = [];
let loss = NaN;
for (let i = 0; i < warmup + steps; i++) {
  const mb = batch();
  const t = performance.now();
  const result = await step.run(mb);
  const ms = performance.now() - t;
  loss = result.loss;
  if (i >= warmup) times.push(ms);
}
const tensorsBefore = tf.memory().numTensors;
const mb = batch();
const t = performance.now();
const info = await tf.profile(() => step.run(mb));
const profiledMs = performance.now() - t;
const leaked = tf.memory().numTensors - tensorsBefore;

/** Kernel time by name; BatchMatMul split into 2-D products and batched (attention) ones. */
const byKernel = new Map();
for (const k of info.kernels) {
  // A custom-gradient op appears as an "unnamed scope" around its own kernels: counted once, inside.
  if (k.name === 'unnamed scope') continue;
  let name = k.name;
  if (name === 'BatchMatMul') {
    const batchDim = (k.inputShapes[0] ?? []).slice(0, -2).reduce((a, b) => a * b, 1);
    name = batchDim > 1 ? 'BatchMatMul (batched)' : 'BatchMatMul (2-D)';
  }
  const entry = byKernel.get(name) ?? { ms: 0, calls: 0 };
  entry.ms += k.kernelTimeMs;
  entry.calls += 1;
  byKernel.set(name, entry);
}
const kernels = [...byKernel.entries()]
  .map(([name, e]) => ({ name, ms: e.ms, calls: e.calls }))
  .sort((a, b) => b.ms - a.ms);
times.sort((a, b) => a - b);
const medianMs = times[Math.floor(times.length / 2)];
console.log(
  JSON.stringify({
    shape: shapeName,
    tokensPerStep: B * T,
    medianMs,
    minMs: times[0],
    tokensPerSecond: (B * T) / (medianMs / 1000),
    loss,
    profile: {
      stepMs: profiledMs,
      kernelCalls: info.kernels.length,
      kernels,
      newBytes: info.newBytes,
      peakBytes: info.peakBytes,
    },
    leakedTensors: leaked,
    trainable: params.size,
  }),
);
// The multithreaded build's pthread workers would keep the process alive.
process.exit(0);
