#!/usr/bin/env node
// --gradient-checkpointing: what recomputing each layer (and the loss, a
// chunk of logits at a time) in backward saves and costs in a LoRA training
// step, off against on in the same run, on the default model
// (packages/models/pretrained/default: 4 layers, vocabulary 257) or on
// `big-vocab`, a random one-layer GPT-2 of C 64 and vocabulary 32768 made
// here, where the logits are most of the activations. Each measurement is a
// fresh process, so its peak RSS (the wasm heap never shrinks) is its own:
// the peak tensor bytes of one step (tf.profile), the process's peak RSS,
// and the time per step (median of --steps after one warm-up), for each
// micro-batch of --shapes.
//   node test/bench/gradient-checkpointing/run.mjs [--model default|big-vocab] [--steps 5] [--shapes 8x128,16x256]
// Needs the build (pnpm build).
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = fileURLToPath(import.meta.url);
const ROOT = resolve(dirname(HERE), '../../..');
const { values: opt } = parseArgs({
  options: {
    backend: { type: 'string', default: 'wasm' },
    model: { type: 'string', default: 'default' },
    steps: { type: 'string', default: '5' },
    shapes: { type: 'string' },
    dir: { type: 'string' }, // the child's model folder
    child: { type: 'string' }, // "BxT:on|off": one measurement, printed as JSON
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  console.log(
    'usage: node test/bench/gradient-checkpointing/run.mjs [--model default|big-vocab] [--backend wasm] [--steps 5] [--shapes BxT,...]',
  );
  process.exit(0);
}
const DEFAULT_MODEL = join(ROOT, 'packages/models/pretrained/default');
const SHAPES = { default: '8x128,16x256,64x32', 'big-vocab': '64x64,128x64' };

/** A random one-layer GPT-2 of vocabulary 32768 (the default model's byte tokenizer). */
async function bigVocabModel() {
  const { float32Entry, writeSafetensorsFile } = await import(
    join(ROOT, 'packages/core/dist/src/index.js')
  );
  const { modelConfigFromJson, randomModelWeights } = await import(
    join(ROOT, 'packages/models/dist/src/index.js')
  );
  const dir = join(tmpdir(), 'lorafleet-bench-big-vocab');
  mkdirSync(dir, { recursive: true });
  const json = JSON.parse(readFileSync(join(DEFAULT_MODEL, 'config.json'), 'utf8'));
  Object.assign(json, { vocab_size: 32768, n_layer: 1, n_embd: 64, n_head: 2 });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(json, null, 2));
  copyFileSync(join(DEFAULT_MODEL, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  const weights = randomModelWeights(modelConfigFromJson(json, 'big-vocab'), 1);
  const entries = new Map([...weights].map(([k, w]) => [k, float32Entry(w.data, w.shape)]));
  await writeSafetensorsFile(join(dir, 'model.safetensors'), entries);
  return dir;
}

/** One measurement in this process: shape "BxT", checkpointing on or off. */
async function child(spec) {
  const { TrainableParameters, lossAndGradsAsync, tf, useBackend } = await import(
    join(ROOT, 'packages/core/dist/src/index.js')
  );
  const { addLora, loadModel, tokenNllSum } = await import(
    join(ROOT, 'packages/models/dist/src/index.js')
  );
  const { TrainingStep } = await import(join(ROOT, 'packages/worker/dist/src/index.js'));
  const [shape, mode] = spec.split(':');
  const [B, T] = shape.split('x').map(Number);
  const on = mode === 'on';
  await useBackend(opt.backend);
  const { model } = await loadModel(opt.dir);
  const V = model.modelConfig.vocabSize;
  const layers = await addLora(
    model.linears(),
    'default',
    { r: 8, alpha: 16, dropout: 0.05, rslora: false },
    { kind: 'kaiming' },
    ['c_attn', 'c_proj', 'c_fc'],
    0,
  );
  const params = TrainableParameters.fromLoraLayers(layers);
  const step = new TrainingStep(model, params, {
    optimizer: { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 },
    schedule: { kind: 'constant' },
    maxGradNorm: 1,
    seed: 0,
    gradientCheckpointing: on,
  });
  const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7919 + 13) % V);
  const batch = { ids, labels: ids.slice(), batchSize: B, seqLen: T };
  const pass = { training: true, seed: 1, gradientCheckpointing: on };
  const profile = await tf.profile(() =>
    lossAndGradsAsync(params, () => tokenNllSum(model, batch, pass)),
  );
  const times = [];
  let loss = 0;
  for (let s = 0; s <= Number(opt.steps); s++) {
    const start = performance.now();
    loss = (await step.run([batch])).loss;
    if (s > 0) times.push(performance.now() - start); // step 0 warms up
  }
  times.sort((a, b) => a - b);
  return {
    shape,
    on,
    msPerStep: times[Math.floor(times.length / 2)],
    peakStepBytes: profile.peakBytes,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    loss,
  };
}

if (opt.child) {
  console.log(JSON.stringify(await child(opt.child)));
  process.exit(0);
}

if (!(opt.model in SHAPES)) throw new Error(`--model ${opt.model}: default or big-vocab`);
const dir = opt.model === 'default' ? DEFAULT_MODEL : await bigVocabModel();
const measure = (shape, mode) =>
  JSON.parse(
    execFileSync(
      process.execPath,
      [HERE, '--child', `${shape}:${mode}`, '--dir', dir].concat([
        '--backend',
        opt.backend,
        '--steps',
        opt.steps,
      ]),
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
    ).trim(),
  );
const mib = (n) => `${(n / 2 ** 20).toFixed(0)} MiB`;
console.log(
  `gradient checkpointing on ${opt.backend}, ${opt.model} model, LoRA r 8 on c_attn c_proj c_fc, ` +
    `median of ${opt.steps} steps`,
);
const rows = [];
for (const shape of (opt.shapes ?? SHAPES[opt.model]).split(',')) {
  const off = measure(shape, 'off');
  const on = measure(shape, 'on');
  rows.push({ off, on });
  console.log(
    `${shape}: step peak ${mib(off.peakStepBytes)} -> ${mib(on.peakStepBytes)} ` +
      `(${(on.peakStepBytes / off.peakStepBytes).toFixed(2)}x), peak RSS ${mib(off.maxRssBytes)} -> ` +
      `${mib(on.maxRssBytes)} (${(on.maxRssBytes / off.maxRssBytes).toFixed(2)}x), step ` +
      `${off.msPerStep.toFixed(0)} -> ${on.msPerStep.toFixed(0)} ms ` +
      `(${(on.msPerStep / off.msPerStep).toFixed(2)}x); last loss ` +
      (off.loss === on.loss
        ? 'equal'
        : `${(Math.abs(on.loss - off.loss) / off.loss).toExponential(1)} apart (the loss summed by chunks)`),
  );
}
console.log(`JSON ${JSON.stringify(rows)}`);
