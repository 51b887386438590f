#!/usr/bin/env node
// The Node.js half of the GPU check (test/gpu/run.sh runs it; reference.py is
// the Python half). It imports the built packages (packages/*/dist), as the
// GPU machine has no TypeScript toolchain, and reads tensors with
// `await data()` only (webgpu under Node.js cannot read them synchronously).
//
//   node test/gpu/gpu.mjs <command> [--smoke] [options]
//
//   adapters  --out FILE                     WebGPU adapters and the device opened
//   tiny-model --dir DIR                     a tiny random GPT-2 written by the project
//                                            (--smoke stand-in for `reference.py make-tiny`)
//   train-adapter --model DIR --out DIR      a PEFT adapter from `lorafleet train` (wasm)
//   logits --model DIR --ids FILE --backend B --out DIR [--adapter DIR]
//                                            logits without and with the adapter (float32 files)
//   grads --model DIR --ids FILE --backend B --out FILE
//                                            LoRA and full fine-tuning gradients on B vs wasm
//   throughput --backend B --out FILE        LoRA training steps/s (GPT-2 small shape;
//                                            --smoke: a tiny shape)
//   profile --backend B --out FILE           one such step under tf.profile: GPU time per kernel
//   report --work DIR --out FILE             the summary of everything in DIR
import { spawnSync } from 'node:child_process';
import { Buffer } from 'node:buffer';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  Rng,
  TrainableParameters,
  adamWStep,
  clipGlobalNorm,
  createAdamWState,
  deviceInfo,
  deviceName,
  exportAdapter,
  importAdapter,
  listWebGpuAdapters,
  loadPeftAdapter,
  lossAndGradsAsync,
  readParametersAsync,
  releaseWebGpu,
  savePeftAdapter,
  tf,
  useBackend,
  webGpuErrors,
} from '../../packages/core/dist/src/index.js';
import {
  GPT2_SMALL,
  addLora,
  loadModel,
  randomGpt2Weights,
  saveByteTokenizerConfig,
  tokenNllSum,
  writeGpt2Folder,
} from '../../packages/models/dist/src/index.js';

import { loraGpt2 } from '../bench/webgpu-kernels/common.mjs';
import { summarize } from './report.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

const { positionals, values: opt } = parseArgs({
  allowPositionals: true,
  options: {
    smoke: { type: 'boolean', default: false },
    out: { type: 'string' },
    dir: { type: 'string' },
    model: { type: 'string' },
    adapter: { type: 'string' },
    ids: { type: 'string' },
    backend: { type: 'string', default: 'webgpu' },
    work: { type: 'string' },
    steps: { type: 'string' },
    warmup: { type: 'string' },
  },
});

const need = (name) => {
  if (!opt[name]) throw new Error(`--${name} is required`);
  return opt[name];
};
const log = (line) => console.log(`gpu.mjs: ${line}`);
const writeJson = async (file, value) => {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify(value, null, 2) + '\n');
};
const readJson = (file) => (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : undefined);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2;
};

/** Values of a tensor without dataSync (disposes it). */
async function take(t) {
  try {
    return await t.data();
  } finally {
    t.dispose();
  }
}

/** max |a - b| and max |b| (b: the reference). */
function compare(a, b) {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return { maxAbsDiff: diff, maxAbsRef: scale, relative: scale > 0 ? diff / scale : diff };
}

async function start(backend) {
  await useBackend(backend);
  log(`backend ${backend} on ${deviceName()}`);
}

/** Back to wasm and the GPU released, so that Node.js can exit and errors get reported. */
async function stop() {
  const errors = [...webGpuErrors()];
  await useBackend('wasm');
  releaseWebGpu();
  return errors;
}

// ---------------------------------------------------------------------------

async function adapters() {
  const out = { adapters: [], device: null, errors: {} };
  try {
    out.adapters = await listWebGpuAdapters();
  } catch (error) {
    out.errors.list = error.message;
  }
  try {
    await useBackend('webgpu', { gpu: 0 });
    out.device = deviceInfo();
  } catch (error) {
    out.errors.start = error.message;
  }
  if (out.adapters.length > 0) {
    // One process drives one GPU: asking for another must fail with a clear message.
    try {
      await useBackend('webgpu', { gpu: out.adapters.length });
    } catch (error) {
      out.errors.secondGpu = error.message;
    }
  }
  await stop();
  log(`adapters: ${JSON.stringify(out.adapters)}; device: ${deviceName()}`);
  if (out.device) log(`opened ${out.device.name} (${out.device.adapter?.description ?? ''})`);
  else log(`no WebGPU device: ${out.errors.start}`);
  await writeJson(need('out'), out);
}

/** The tiny model's shape, shared with reference.py make-tiny. */
const TINY = {
  vocabSize: 257,
  nPositions: 64,
  nEmbd: 64,
  nLayer: 2,
  nHead: 4,
  nInner: null,
  layerNormEpsilon: 1e-5,
  embdPdrop: 0,
  attnPdrop: 0,
  residPdrop: 0,
};

function fixedIds(rows, cols, vocab, seed) {
  const rng = new Rng(seed);
  return Array.from({ length: rows }, () =>
    Array.from({ length: cols }, () => Math.floor(rng.uniform() * vocab)),
  );
}

async function tinyModel() {
  const dir = need('dir');
  const weights = randomGpt2Weights(TINY, 11, 0.1); // std 0.1: logits of order 1
  await writeGpt2Folder(dir, TINY, weights);
  await saveByteTokenizerConfig(dir, { modelMaxLength: TINY.nPositions });
  await writeJson(join(dir, 'ids.json'), { ids: fixedIds(2, 24, 256, 12) });
  log(`tiny GPT-2 written to ${dir}`);
}

/** Some text with structure, so that a few steps change the adapter visibly. */
function trainingText() {
  const words = ['the', 'fleet', 'trains', 'low', 'rank', 'adapters', 'on', 'every', 'gpu', 'fast'];
  const rng = new Rng(3);
  const lines = [];
  for (let i = 0; i < 200; i++) {
    const n = 5 + Math.floor(rng.uniform() * 6);
    lines.push(Array.from({ length: n }, () => words[Math.floor(rng.uniform() * 10)]).join(' '));
  }
  return lines.join('\n') + '\n';
}

async function trainAdapter() {
  const model = need('model');
  const out = need('out');
  await mkdir(out, { recursive: true });
  const data = join(out, 'train.txt');
  await writeFile(data, trainingText());
  const run = join(out, 'run');
  const args = [
    join(ROOT, 'apps/coordinator/bin/lorafleet.js'),
    'train',
    '--model',
    model,
    '--data',
    data,
    '--out',
    run,
    '--steps',
    '4',
    '--batch-size',
    '4',
    '--seq-len',
    '32',
    '--lora-r',
    '4',
    '--lora-alpha',
    '8',
    '--lora-dropout',
    '0',
    '--target',
    'c_attn,c_proj',
    '--lr',
    '0.05',
    '--backend',
    'wasm',
    '--no-dashboard',
  ];
  const started = performance.now();
  const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  const seconds = (performance.now() - started) / 1000;
  const adapterDir = join(run, 'adapter');
  let via = 'lorafleet train';
  if (r.status !== 0 || !existsSync(join(adapterDir, 'adapter_model.safetensors'))) {
    log(`lorafleet train failed (status ${r.status}); training in this script instead:`);
    console.log((r.stdout + r.stderr).split('\n').slice(-15).join('\n'));
    via = 'in-script (lorafleet train failed)';
    await trainInScript(model, adapterDir);
  }
  log(`adapter (${via}) in ${adapterDir}, ${seconds.toFixed(1)} s`);
  await writeJson(join(out, 'adapter.json'), { via, adapterDir, seconds, status: r.status });
}

/** The fallback: a few AdamW steps of LoRA on c_attn and c_proj, saved as PEFT. */
async function trainInScript(modelDir, adapterDir) {
  await useBackend('wasm');
  const { model } = await loadModel(modelDir);
  const layers = await addLora(
    model.linears(),
    'default',
    { r: 4, alpha: 8, dropout: 0, rslora: false },
    { kind: 'kaiming' },
    ['c_attn', 'c_proj'],
    0,
  );
  const params = TrainableParameters.fromLoraLayers(layers);
  const values = await readParametersAsync(params);
  const state = createAdamWState(params.size);
  const ids = Int32Array.from(fixedIds(4, 32, 256, 5).flat());
  const batch = { ids, labels: ids, batchSize: 4, seqLen: 32 };
  for (let step = 0; step < 4; step++) {
    const { grads } = await lossAndGradsAsync(params, () => tokenNllSum(model, batch));
    const tokens = 4 * 31;
    for (let i = 0; i < grads.length; i++) grads[i] /= tokens;
    adamWStep(values, grads, state, {
      lr: 0.05,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0,
    });
    params.write(values);
  }
  const adapter = exportAdapter(layers, 'default', {
    targetModules: ['c_attn', 'c_proj'],
    bias: 'none',
    initLoraWeights: true,
    baseModelNameOrPath: modelDir,
    taskType: 'CAUSAL_LM',
  });
  await savePeftAdapter(adapterDir, adapter);
  model.dispose();
}

async function writeF32(file, values) {
  await writeFile(file, Buffer.from(values.buffer, values.byteOffset, values.byteLength));
}

async function logits() {
  const backend = opt.backend;
  const out = need('out');
  await mkdir(out, { recursive: true });
  const ids = readJson(need('ids')).ids;
  const [N, T] = [ids.length, ids[0].length];
  await start(backend);
  const started = performance.now();
  const { model, config } = await loadModel(need('model'));
  const input = tf.tensor2d(ids.flat(), [N, T], 'int32');
  const base = await take(model.forward(input));
  await writeF32(join(out, 'base.f32'), base);
  const meta = {
    backend,
    device: deviceName(),
    shape: [N, T, config.vocabSize],
    files: ['base.f32'],
  };
  if (opt.adapter) {
    importAdapter(model.linears(), await loadPeftAdapter(opt.adapter), 'default');
    const adapted = await take(model.forward(input));
    await writeF32(join(out, 'adapted.f32'), adapted);
    meta.files.push('adapted.f32');
    meta.adapterEffect = compare(adapted, base).maxAbsDiff;
  }
  meta.seconds = (performance.now() - started) / 1000;
  input.dispose();
  model.dispose();
  meta.webgpuErrors = await stop();
  await writeJson(join(out, 'meta.json'), meta);
  log(`logits on ${backend}: ${JSON.stringify(meta)}`);
}

/** LoRA (random A and B on every linear layer) and full fine-tuning gradients of one batch. */
async function gradientsOn(backend, modelDir, batch) {
  await start(backend);
  const out = {};
  {
    const { model } = await loadModel(modelDir);
    const layers = await addLora(
      model.linears(),
      'default',
      { r: 4, alpha: 8, dropout: 0, rslora: false },
      { kind: 'kaiming' },
      ['c_attn', 'c_proj', 'c_fc'],
      0,
    );
    const params = TrainableParameters.fromLoraLayers(layers);
    const rng = new Rng(21);
    params.write(Float32Array.from({ length: params.size }, () => rng.normal() * 0.05));
    out.lora = await lossAndGradsAsync(params, () => tokenNllSum(model, batch));
    model.dispose();
  }
  {
    const { model } = await loadModel(modelDir);
    const params = new TrainableParameters(model.namedWeights());
    out.full = await lossAndGradsAsync(params, () => tokenNllSum(model, batch));
    model.dispose();
  }
  out.webgpuErrors = await stop();
  return out;
}

async function grads() {
  const backend = opt.backend;
  const modelDir = need('model');
  const ids = readJson(need('ids')).ids;
  const [B, T] = [ids.length, ids[0].length];
  const flat = Int32Array.from(ids.flat());
  const batch = { ids: flat, labels: flat, batchSize: B, seqLen: T };
  const ref = await gradientsOn('wasm', modelDir, batch);
  const got = await gradientsOn(backend, modelDir, batch);
  const result = { backend, reference: 'wasm', webgpuErrors: got.webgpuErrors };
  for (const kind of ['lora', 'full']) {
    result[kind] = {
      parameters: got[kind].grads.length,
      loss: got[kind].loss,
      lossReference: ref[kind].loss,
      ...compare(got[kind].grads, ref[kind].grads),
    };
  }
  await writeJson(need('out'), result);
  log(`gradients ${backend} vs wasm: ${JSON.stringify(result)}`);
}

/**
 * The throughput benchmark's model and batch: GPT-2 small's shape (--smoke: a
 * tiny one), LoRA r=8 on c_attn, AdamW state, random ids. Dropout is off
 * (tfjs draws seeded dropout masks on the CPU; the PyTorch run turns it off too).
 */
async function loraBench(smoke) {
  const config = smoke
    ? { ...TINY, nPositions: 64 }
    : { ...GPT2_SMALL, embdPdrop: 0, attnPdrop: 0, residPdrop: 0 };
  const [B, T] = smoke ? [2, 32] : [8, 512];
  const { model, params, batch } = await loraGpt2(config, B, T);
  const values = await readParametersAsync(params);
  const state = createAdamWState(params.size);
  const adamw = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };
  /** One step as the worker takes it: forward + backward, the gradient read, clip, AdamW, write back. */
  const step = async () => {
    const { loss, grads } = await lossAndGradsAsync(params, () => tokenNllSum(model, batch));
    const tokens = B * (T - 1);
    for (let i = 0; i < grads.length; i++) grads[i] /= tokens;
    clipGlobalNorm(grads, 1);
    adamWStep(values, grads, state, adamw);
    params.write(values);
    return loss / tokens;
  };
  return { config, B, T, model, params, batch, step };
}

/** LoRA training throughput as the worker trains (loraBench's step), with tfjs's GPU allocation. */
async function throughput() {
  const backend = opt.backend;
  const smoke = opt.smoke;
  const warmup = Number(opt.warmup ?? (smoke ? 1 : 2));
  const steps = Number(opt.steps ?? (smoke ? 2 : 5));
  await start(backend);
  const t0 = performance.now();
  const { config, B, T, model, params, step } = await loraBench(smoke);
  const loadSeconds = (performance.now() - t0) / 1000;
  const times = [];
  const losses = [];
  let gpuBytes = 0;
  for (let i = 0; i < warmup + steps; i++) {
    const s0 = performance.now();
    const loss = await step();
    const seconds = (performance.now() - s0) / 1000;
    const memory = tf.memory();
    gpuBytes = Math.max(gpuBytes, memory.numBytesAllocatedInGPU ?? memory.numBytesInGPU ?? 0);
    losses.push(loss);
    if (i >= warmup) times.push(seconds);
    log(`step ${i + 1}/${warmup + steps}: ${seconds.toFixed(3)} s, loss ${loss.toFixed(4)}`);
  }
  const result = {
    backend,
    device: deviceName(),
    shape: {
      layers: config.nLayer,
      width: config.nEmbd,
      heads: config.nHead,
      vocab: config.vocabSize,
    },
    batch: B,
    seqLen: T,
    lora: { r: 8, alpha: 16, target: ['c_attn'], trainable: params.size },
    optimizer: 'AdamW (JS, fused buffer), clip 1.0',
    warmup,
    steps,
    loadSeconds,
    stepSeconds: times,
    medianStepSeconds: median(times),
    tokensPerSecond: (B * T) / median(times),
    losses,
    tfjsGpuBytesAllocated: gpuBytes || null,
  };
  model.dispose();
  result.webgpuErrors = await stop();
  await writeJson(need('out'), result);
  log(
    `throughput on ${backend}: ${result.tokensPerSecond.toFixed(0)} tokens/s (median step ${result.medianStepSeconds.toFixed(3)} s)`,
  );
}

/**
 * Where the step's time goes: one step (after a warm-up) under tf.profile,
 * each kernel timed on the GPU by timestamp queries (0 where the adapter has
 * none), summed by kernel and by kernel + shapes, against the step's wall time
 * unprofiled. Kernel time far below wall time means dispatch and the framework,
 * not the kernels, bound the step (issue #12, item 5).
 */
async function profile() {
  const backend = opt.backend;
  await start(backend);
  const { model, params, batch, step } = await loraBench(opt.smoke);
  await step();
  const w0 = performance.now();
  await step();
  const wallMs = performance.now() - w0;
  const submitBatches = await submitBatchVariants(model, params, batch);
  const info = await tf.profile(() => step());
  const byKernel = new Map();
  const byShape = new Map();
  const add = (map, key, ms, programs) => {
    const e = map.get(key) ?? { key, ms: 0, count: 0, programs: new Set() };
    e.ms += ms;
    e.count += 1;
    for (const p of programs) e.programs.add(p);
    map.set(key, e);
  };
  for (const k of info.kernels) {
    const ms = Number(k.kernelTimeMs) || 0;
    const programs = String(k.extraInfo ?? '')
      .split(', ')
      .map((p) => p.split(':')[0])
      .filter((p) => p && p !== 'Object');
    add(byKernel, k.name, ms, programs);
    add(byShape, `${k.name} ${JSON.stringify(k.inputShapes)}`, ms, programs);
  }
  const rows = (map, n) =>
    [...map.values()]
      .sort((a, b) => b.ms - a.ms)
      .slice(0, n)
      .map((e) => ({ ...e, programs: [...e.programs] }));
  // A customGrad scope's time holds its inner kernels' again: left out of the sum.
  const kernelMs = info.kernels
    .filter((k) => !/scope/.test(k.name))
    .reduce((s, k) => s + (Number(k.kernelTimeMs) || 0), 0);
  const result = {
    backend,
    device: deviceName(),
    wallMs,
    submitBatches,
    kernelMs,
    kernels: info.kernels.length,
    peakBytes: info.peakBytes,
    byKernel: rows(byKernel, 40),
    byShape: rows(byShape, 40),
  };
  model.dispose();
  result.webgpuErrors = await stop();
  await writeJson(need('out'), result);
  log(
    `profile on ${backend}: step ${wallMs.toFixed(1)} ms wall, ${kernelMs.toFixed(1)} ms in ${result.kernels} kernels`,
  );
  for (const e of result.byKernel.slice(0, 12))
    log(`  ${e.key}: ${e.ms.toFixed(2)} ms in ${e.count} calls`);
}

/**
 * One forward + backward split in two: the CPU's time to issue every kernel
 * (encode: tfjs's synchronous part) and the wait for the GPU to finish (the
 * gradient read). If encode + wait is near the GPU's kernel time, the CPU and
 * the GPU overlap; if wait alone is, the GPU idles while the CPU encodes.
 */
async function encodeAndWait(model, params, batch) {
  const t0 = performance.now();
  const { value, flat } = tf.tidy(() => {
    const { value, grads } = tf.variableGrads(() => tokenNllSum(model, batch), params.variables);
    return { value, flat: tf.concat(Object.values(grads).map((g) => g.reshape([-1]))) };
  });
  const t1 = performance.now();
  await Promise.all([value.data(), flat.data()]);
  const t2 = performance.now();
  tf.dispose([value, flat]);
  return { encodeMs: t1 - t0, waitMs: t2 - t1 };
}

/** encodeAndWait (median of 3) under tfjs's WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE (dispatches per submit). */
async function submitBatchVariants(model, params, batch) {
  const flag = 'WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE';
  if (tf.getBackend() !== 'webgpu') return [];
  const before = tf.env().get(flag);
  const rows = [];
  for (const size of [before, 15, 32, 128, 100000]) {
    tf.env().set(flag, size);
    const runs = [];
    for (let i = 0; i < 3; i++) runs.push(await encodeAndWait(model, params, batch));
    const m = (key) => median(runs.map((r) => r[key]));
    rows.push({ submitBatch: size, encodeMs: m('encodeMs'), waitMs: m('waitMs') });
    log(
      `submit every ${size} dispatches: encode ${m('encodeMs').toFixed(1)} ms, wait ${m('waitMs').toFixed(1)} ms`,
    );
  }
  tf.env().set(flag, before);
  return rows;
}

// ---------------------------------------------------------------------------

async function report() {
  const r = summarize(need('work'));
  await writeJson(need('out'), r);
  console.log(r.summary.join('\n'));
}

const commands = {
  adapters,
  'tiny-model': tinyModel,
  'train-adapter': trainAdapter,
  logits,
  grads,
  throughput,
  profile,
  report,
};
const command = commands[positionals[0]];
if (!command) {
  console.error(
    `usage: node test/gpu/gpu.mjs <${Object.keys(commands).join('|')}> [options] (see the file's header)`,
  );
  process.exit(2);
}
// Exit explicitly: tfjs and Dawn keep handles that would hold the process open.
command().then(
  () => process.exit(0),
  (error) => {
    console.error(`gpu.mjs ${positionals[0]}: ${error.stack ?? error}`);
    process.exit(1);
  },
);
