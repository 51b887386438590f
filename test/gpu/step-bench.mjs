// The GPU check's step benchmarks (gpu.mjs throughput and profile): LoRA
// training throughput as the worker trains, and where one step's time goes.
import {
  adamWStep,
  clipGlobalNorm,
  createAdamWState,
  deviceName,
  lossAndGradsAsync,
  readParametersAsync,
  tf,
} from '../../packages/core/dist/src/index.js';
import {
  GPT2_SMALL,
  ScheduledGradients,
  chooseStepGradients,
  tokenNllSum,
} from '../../packages/models/dist/src/index.js';
import { loraGpt2 } from '../bench/webgpu-kernels/common.mjs';
import { TINY, log, median, start, stop, writeJson } from './common.mjs';

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
  // The gradient path TrainingStep takes (LORAFLEET_WEBGPU_STEP, default auto).
  const gradients = chooseStepGradients(model, params);
  const scheduled = gradients.path === 'scheduled' ? new ScheduledGradients(model, params) : null;
  log(`gradients: ${gradients.path}${gradients.reason ? ` (${gradients.reason})` : ''}`);
  const lossAndGrads = async () => {
    if (!scheduled) return lossAndGradsAsync(params, () => tokenNllSum(model, batch));
    scheduled.add(batch);
    return scheduled.take();
  };
  /** One step as the worker takes it: forward + backward, the gradient read, clip, AdamW, write back. */
  const step = async () => {
    const { loss, grads } = await lossAndGrads();
    const tokens = B * (T - 1);
    for (let i = 0; i < grads.length; i++) grads[i] /= tokens;
    clipGlobalNorm(grads, 1);
    adamWStep(values, grads, state, adamw);
    params.write(values);
    return loss / tokens;
  };
  const dispose = () => {
    scheduled?.dispose();
    model.dispose();
  };
  return { config, B, T, model, params, batch, step, gradients, scheduled, dispose };
}

/** LoRA training throughput as the worker trains (loraBench's step), with tfjs's GPU allocation. */
export async function throughput(opt) {
  const backend = opt.backend;
  const smoke = opt.smoke;
  const warmup = Number(opt.warmup ?? (smoke ? 1 : 2));
  const steps = Number(opt.steps ?? (smoke ? 2 : 5));
  await start(backend);
  const t0 = performance.now();
  const { config, B, T, params, step, gradients, scheduled, dispose } = await loraBench(smoke);
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
    gradients,
    planBytes: scheduled?.planBytes ?? null,
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
  dispose();
  result.webgpuErrors = await stop();
  await writeJson(opt.out, result);
  log(
    `throughput on ${backend} (${gradients.path}): ${result.tokensPerSecond.toFixed(0)} tokens/s (median step ${result.medianStepSeconds.toFixed(3)} s)`,
  );
}

/**
 * Where the step's time goes: one step (after a warm-up) under tf.profile,
 * each kernel timed on the GPU by timestamp queries (0 where the adapter has
 * none), summed by kernel and by kernel + shapes, against the step's wall time
 * unprofiled. Kernel time far below wall time means dispatch and the framework,
 * not the kernels, bound the step (issue #12, item 5).
 */
export async function profile(opt) {
  const backend = opt.backend;
  await start(backend);
  const bench = await loraBench(opt.smoke);
  const { model, params, batch, step, gradients, dispose } = bench;
  if (gradients.path === 'scheduled') return profileScheduled(opt, bench);
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
  dispose();
  result.webgpuErrors = await stop();
  await writeJson(opt.out, result);
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

/**
 * The hand-scheduled step's profile: wall time of a whole step, then one
 * micro-batch replayed with every dispatch timed on the GPU (timestamp
 * queries, one compute pass each), summed by kernel and by kernel + shape.
 * GPU time near the wall time means the GPU, not the host, bounds the step.
 */
async function profileScheduled(opt, bench) {
  const { step, batch, scheduled, dispose } = bench;
  await step();
  const w0 = performance.now();
  await step();
  const wallMs = performance.now() - w0;
  const rows = await scheduled.profile(batch);
  const byKernel = new Map();
  const byShape = new Map();
  for (const r of rows) {
    const ms = r.ns / 1e6;
    for (const [map, key] of [
      [byKernel, r.label.split(' [')[0]],
      [byShape, r.label],
    ]) {
      const e = map.get(key) ?? { key, ms: 0, count: 0, programs: [] };
      e.ms += ms;
      e.count += 1;
      map.set(key, e);
    }
  }
  const sorted = (map) => [...map.values()].sort((a, b) => b.ms - a.ms).slice(0, 40);
  const kernelMs = rows.reduce((a, r) => a + r.ns / 1e6, 0);
  const result = {
    backend: opt.backend,
    device: deviceName(),
    gradients: 'scheduled',
    wallMs,
    kernelMs,
    kernels: rows.length,
    planBytes: scheduled.planBytes,
    byKernel: sorted(byKernel),
    byShape: sorted(byShape),
  };
  dispose();
  result.webgpuErrors = await stop();
  await writeJson(opt.out, result);
  log(
    `profile (scheduled) on ${opt.backend}: step ${wallMs.toFixed(1)} ms wall, ${kernelMs.toFixed(1)} ms of GPU time in ${rows.length} dispatches`,
  );
  for (const e of result.byKernel.slice(0, 12))
    log(`  ${e.key}: ${e.ms.toFixed(2)} ms in ${e.count} dispatches`);
}
