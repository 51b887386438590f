#!/usr/bin/env node
// What TRL's token metrics cost a DPO step: DPO's and KTO's policy pass
// computes, beside the log-probabilities, each response token's argmax hit,
// softmax entropy and mean logit (response-metrics.ts: mean_token_accuracy,
// entropy, logits/chosen, logits/rejected) from the same logits. This times,
// in one process on wasm:
//   step:    the whole DPO step as workers run it (the reference pass with the
//            adapter off, the policy forward + backward, metrics included);
//   metrics: the metric columns alone (responseColumns) on logits of the
//            same shape, [2B*T, V], forward only (they carry no gradient);
// and prints metrics / step: the share of the step the metrics take.
//   pnpm build && node test/bench/preference-metrics/run.mjs [--shapes tiny,gpt2] [--pairs 2] [--steps 3]
// Shapes: "tiny" (GPT-2, 4 layers x 256, vocab 4096) and "gpt2" (GPT-2
// small: 12 x 768, vocab 50257), random weights, LoRA r 8 on c_attn, each
// pair's responses the last half of 128-token sequences.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const SHAPES = {
  tiny: { nLayer: 4, nEmbd: 256, nHead: 8, vocabSize: 4096 },
  gpt2: { nLayer: 12, nEmbd: 768, nHead: 12, vocabSize: 50257 },
};
const USAGE = `usage: node test/bench/preference-metrics/run.mjs [options]   (after pnpm build)
  --shapes LIST  comma-separated, of: ${Object.keys(SHAPES).join(', ')} (default: all)
  --pairs B      preference pairs per micro-batch, each 2 x 128 tokens (default 2)
  --steps N      timed repetitions after one warm-up, median reported (default 3)
  -h, --help     show this help`;
const { values: opt } = parseArgs({
  options: {
    shapes: { type: 'string', default: Object.keys(SHAPES).join(',') },
    pairs: { type: 'string', default: '2' },
    steps: { type: 'string', default: '3' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  console.log(USAGE);
  process.exit(0);
}
const [B, steps] = [Number(opt.pairs), Number(opt.steps)];
const shapes = opt.shapes.split(',');
if (![B, steps].every((n) => Number.isInteger(n) && n >= 1) || shapes.some((s) => !SHAPES[s])) {
  console.error(
    `bad options: --pairs and --steps take integers >= 1, --shapes names shapes\n${USAGE}`,
  );
  process.exit(2);
}

const { tf, TrainableParameters, lossAndGradsAsync, useBackend } = await import(
  join(ROOT, 'packages/core/dist/src/index.js')
);
const { Gpt2Model, randomGpt2Weights, addLora, preparePairs, responseColumns } = await import(
  join(ROOT, 'packages/models/dist/src/index.js')
);
await useBackend('wasm');
const T = 128;

/** A pair batch [B, 2T]: each half's last T/2 tokens labelled, the rejected response differing. */
function pairBatch(V) {
  const ids = new Int32Array(B * 2 * T);
  const labels = new Int32Array(B * 2 * T).fill(-100);
  for (let s = 0; s < 2 * B; s++) {
    for (let t = 0; t < T; t++) {
      const i = s * T + t;
      ids[i] = (t < T / 2 ? i * 7919 : i * 7919 + (s % 2) * 31) % V;
      if (t >= T / 2) labels[i] = ids[i];
    }
  }
  return { ids, labels, batchSize: B, seqLen: 2 * T };
}

const median = (xs) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];

async function timed(run) {
  const times = [];
  for (let s = 0; s <= steps; s++) {
    const t = performance.now();
    await run();
    if (s > 0) times.push(performance.now() - t);
  }
  return median(times);
}

async function measure(name) {
  const shape = SHAPES[name];
  const config = { ...shape, nPositions: T, nInner: null, layerNormEpsilon: 1e-5 };
  Object.assign(config, { embdPdrop: 0, attnPdrop: 0, residPdrop: 0 });
  const model = new Gpt2Model(config, randomGpt2Weights(config, 1));
  const lora = { r: 8, alpha: 16, dropout: 0, rslora: false };
  const layers = await addLora(
    model.linears(),
    'default',
    lora,
    { kind: 'kaiming' },
    ['c_attn'],
    0,
  );
  const params = TrainableParameters.fromLoraLayers(layers);
  const batch = pairBatch(shape.vocabSize);
  const step = timed(async () => {
    const prepared = preparePairs(model, batch, { kind: 'dpo', beta: 0.1 });
    try {
      await lossAndGradsAsync(params, () => tf.mean(prepared.scores({ training: true }).losses));
    } finally {
      prepared.dispose();
    }
  });
  const stepMs = await step;
  const N = 2 * B * T;
  const logits = tf.randomNormal([N, shape.vocabSize], 0, 2, 'float32', 3);
  const labels = tf.tensor1d(batch.labels, 'int32');
  const metricsMs = await timed(async () => {
    const columns = responseColumns(logits, labels);
    await columns.data();
    columns.dispose();
  });
  tf.dispose([logits, labels]);
  return { name, shape, stepMs, metricsMs };
}

console.log(
  `DPO step on wasm: ${B} pairs x 2 x ${T} tokens, LoRA r 8 on c_attn, median of ${steps} after a warm-up`,
);
console.log('| shape | DPO step (ms) | token metrics (ms) | metrics / step |');
console.log('|---|---|---|---|');
for (const name of shapes) {
  const { shape, stepMs, metricsMs } = await measure(name);
  const label = `${name} (${shape.nLayer} x ${shape.nEmbd}, vocab ${shape.vocabSize})`;
  const share = ((metricsMs / stepMs) * 100).toFixed(1);
  console.log(`| ${label} | ${stepMs.toFixed(0)} | ${metricsMs.toFixed(0)} | ${share}% |`);
}
