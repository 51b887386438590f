#!/usr/bin/env node
// The Node.js half of the GPU check (test/gpu/run.sh runs it; reference.py is
// the Python half). It imports the built packages (packages/*/dist), as the
// GPU machine has no TypeScript toolchain, and reads tensors with
// `await data()` only (webgpu under Node.js cannot read them synchronously).
//
//   node test/gpu/gpu.mjs <command> [--smoke] [options]
//
//   adapters  --out FILE                     WebGPU adapters and the device opened
//   device-layer --out FILE                  the device-select Vulkan layer on this driver
//                                            (device-layer.mjs)
//   tiny-model --dir DIR                     a tiny random GPT-2 written by the project
//                                            (--smoke stand-in for `reference.py make-tiny`)
//   train-adapter --model DIR --out DIR      a PEFT adapter from `lorafleet train` (wasm)
//   logits --model DIR --ids FILE --backend B --out DIR [--adapter DIR]
//                                            logits without and with the adapter (float32 files)
//   family-models --dir DIR                  tiny random Llama-family folders (families.json)
//                                            written by the project (--smoke stand-in for
//                                            `reference.py make-families`)
//   family-adapters --dir DIR                an adapter of each from `lorafleet train` and its
//                                            merged folder from `lorafleet merge` (wasm)
//   family-logits --dir DIR --backend B      each of those folders' logits, with and without
//                                            the adapter (families.mjs)
//   grads --model DIR --ids FILE --backend B --out FILE
//                                            LoRA and full fine-tuning gradients on B vs wasm
//   throughput --backend B --out FILE        LoRA training steps/s (GPT-2 small shape;
//                                            --smoke: a tiny shape)
//   profile --backend B --out FILE           one such step under tf.profile: GPU time per kernel
//                                            (throughput and profile: step-bench.mjs)
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
  createAdamWState,
  deviceInfo,
  deviceName,
  exportAdapter,
  importAdapter,
  listWebGpuAdapters,
  loadPeftAdapter,
  lossAndGradsAsync,
  readParametersAsync,
  savePeftAdapter,
  tf,
  useBackend,
} from '../../packages/core/dist/src/index.js';
import {
  addLora,
  loadModel,
  randomGpt2Weights,
  saveByteTokenizerConfig,
  tokenNllSum,
  writeGpt2Folder,
} from '../../packages/models/dist/src/index.js';

import { capabilities } from './capabilities.mjs';
import { deviceLayer } from './device-layer.mjs';
import { familyAdapters, familyLogits, familyModels } from './families.mjs';
import { TINY, fixedIds, log, start, stop, writeJson } from './common.mjs';
import { summarize } from './report.mjs';
import { profile, throughput } from './step-bench.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

const { positionals, values: opt } = parseArgs({
  allowPositionals: true,
  options: {
    smoke: { type: 'boolean', default: false },
    out: { type: 'string' },
    dir: { type: 'string' },
    model: { type: 'string' },
    adapter: { type: 'string' },
    'dora-adapter': { type: 'string' },
    dora: { type: 'boolean', default: false },
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
const readJson = (file) => (existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : undefined);
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
    out.capabilities = await capabilities();
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
  if (out.capabilities) {
    const { features, subgroupSizes } = out.capabilities;
    log(`features: ${features.join(' ')}; subgroup sizes ${subgroupSizes.join('-')}`);
  } else log(`no WebGPU device: ${out.errors.start}`);
  await writeJson(need('out'), out);
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
    ...(opt.dora ? ['--use-dora'] : []),
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
    await trainInScript(model, adapterDir, opt.dora);
  }
  log(`adapter (${via}) in ${adapterDir}, ${seconds.toFixed(1)} s`);
  await writeJson(join(out, 'adapter.json'), { via, adapterDir, seconds, status: r.status });
}

/** The fallback: a few AdamW steps of LoRA (or DoRA) on c_attn and c_proj, saved as PEFT. */
async function trainInScript(modelDir, adapterDir, useDora) {
  await useBackend('wasm');
  const { model } = await loadModel(modelDir);
  const layers = await addLora(
    model.linears(),
    'default',
    { r: 4, alpha: 8, dropout: 0, rslora: false, useDora },
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
  if (opt['dora-adapter']) {
    // A second adapter, DoRA's (use_dora): the first one is switched off first.
    for (const layer of model.linears()) layer.setActive(null);
    importAdapter(model.linears(), await loadPeftAdapter(opt['dora-adapter']), 'dora');
    const adapted = await take(model.forward(input));
    await writeF32(join(out, 'adapted-dora.f32'), adapted);
    meta.files.push('adapted-dora.f32');
    meta.doraEffect = compare(adapted, base).maxAbsDiff;
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

// ---------------------------------------------------------------------------

async function report() {
  const r = summarize(need('work'));
  await writeJson(need('out'), r);
  console.log(r.summary.join('\n'));
}

const commands = {
  adapters,
  'device-layer': async () => deviceLayer(need('out')),
  'tiny-model': tinyModel,
  'family-models': async () => familyModels(need('dir')),
  'family-adapters': async () => familyAdapters(need('dir')),
  'family-logits': async () => familyLogits(need('dir'), opt.backend),
  'train-adapter': trainAdapter,
  logits,
  grads,
  throughput: async () => throughput({ ...opt, out: need('out') }),
  profile: async () => profile({ ...opt, out: need('out') }),
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
