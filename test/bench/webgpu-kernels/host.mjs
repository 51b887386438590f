#!/usr/bin/env node
// The host's cost of a LoRA step on webgpu, against Dawn's own floor: on an
// H200 the step is bound by issuing its ~1,800 kernels (docs/webgpu-kernels.md,
// "Where a step's time goes"), and that cost is the CPU's, so it can be
// measured without a GPU. Dawn's null adapter (default here) runs no shader:
// the time of a step is what tfjs, the project's kernel functions and Dawn's
// API calls take. The peer, in the same process: the same number of bare
// dispatches issued straight to Dawn as tfjs issues them (a bind group and a
// uniform write per dispatch, a submit every 15), the floor of any framework
// on this device API. Also the hand-scheduled step (docs/webgpu-kernels.md,
// "The hand-scheduled step"): the same kernels replayed as one recorded
// command buffer, and its buffers' bytes against the tape's peak. Model:
// GPT-2 small's layout (12 layers, 768 wide,
// 12 heads, LoRA r=8 on c_attn) at 1 x 64 tokens and an 8,192-word
// vocabulary (the null adapter's limits), whose kernel count is the full
// shape's.
// With --dropout: GPT-2's config.json dropout (0.1 on embeddings, attention
// probabilities and residuals) and a new seed per step, training; before
// 2026-12-05 that step took the tape with the composed attention (the
// "(attention composed of tfjs ops)" line). At 12 layers the tape with
// dropout outgrows the null adapter's memory (tfjs's pool keeps every freed
// buffer): --layers 8 fits.
//   pnpm build && node test/bench/webgpu-kernels/host.mjs [--steps N] [--gpu] [--dropout] [--layers N]
import { parseArgs } from 'node:util';
import {
  installSharedClone,
  lossAndGradsAsync,
  releaseWebGpu,
  uninstallSharedClone,
  tf,
  useBackend,
  useFusedAttention,
  webGpuErrors,
} from '../../../packages/core/dist/src/index.js';
import {
  GPT2_SMALL,
  ScheduledGradients,
  tokenNllSum,
} from '../../../packages/models/dist/src/index.js';
import { loraGpt2 } from './common.mjs';

const HELP = `usage: node test/bench/webgpu-kernels/host.mjs [options]
  --steps N   timed steps (default 20), after 3 warm-up steps
  --gpu       the machine's adapter instead of Dawn's null adapter (the step's
              host time then includes waiting for the GPU)
  --dropout   GPT-2's default dropout of 0.1 (embeddings, attention, residuals), training
  --layers N  blocks of GPT-2 small's layout (default 12)
  --help      this text`;
const { values: opt } = parseArgs({
  options: {
    steps: { type: 'string', default: '20' },
    gpu: { type: 'boolean', default: false },
    dropout: { type: 'boolean', default: false },
    layers: { type: 'string', default: '12' },
    help: { type: 'boolean', default: false },
  },
});
if (opt.help) {
  console.log(HELP);
  process.exit(0);
}
const steps = Number(opt.steps);
if (!Number.isInteger(steps) || steps < 1)
  throw new Error(`--steps must be >= 1, got ${opt.steps}`);
const layers = Number(opt.layers);
if (!Number.isInteger(layers) || layers < 1)
  throw new Error(`--layers must be >= 1, got ${opt.layers}`);
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const mib = (bytes) => (bytes / 2 ** 20).toFixed(1);

await useBackend('webgpu', opt.gpu ? {} : { dawnFlags: ['backend=null'] });
// Variants of the same step on one model: the tape with the defaults; tfjs's composed
// attention; tfjs's own clone of every tensor saved for backward (a kernel run each),
// interleaved step by step; and the hand-scheduled step (one recorded command buffer, no
// tape), timed first and on its own: the null adapter's memory cap does not hold the
// plan beside tfjs's pool of freed buffers.
const VARIANTS = [
  { name: '', fused: true, shared: true },
  { name: ' (attention composed of tfjs ops)', fused: false, shared: true },
  { name: " (tfjs's clone of saved tensors: an Identity kernel each)", fused: true, shared: false },
  { name: ' (the hand-scheduled step)', fused: true, shared: true, scheduled: true },
];
const { results, memory } = await loraSteps(VARIANTS);
const stepMs = results[0];
const dawnUs = await bareDispatches(stepMs.dispatches);
const where = opt.gpu ? 'the GPU' : "Dawn's null adapter";
for (const [v, r] of results.entries()) {
  console.log(
    `LoRA step${VARIANTS[v].name} on ${where}: ${r.ms.toFixed(1)} ms of host time (median of ${steps}), ` +
      `${r.kernels} kernels of which ${r.dispatches} dispatch: ${((1000 * r.ms) / r.kernels).toFixed(1)} us ` +
      `per kernel, ${((1000 * r.ms) / r.dispatches).toFixed(1)} us per dispatch` +
      (v > 0 ? `; the default step takes ${(stepMs.ms / r.ms).toFixed(2)}x its time` : ''),
  );
}
console.log(
  `device memory of a step beyond the model: the tape's peak ${mib(memory.tape)} MiB (tfjs's ` +
    `count of live tensors), the scheduled step's plan ${mib(memory.plan)} MiB: ` +
    `${(memory.plan / memory.tape).toFixed(2)}x`,
);
console.log(
  `bare Dawn dispatches (bind group + uniform write each, submit every 15): ${dawnUs.toFixed(1)} us each; ` +
    `the step's host time is ${((1000 * stepMs.ms) / stepMs.dispatches / dawnUs).toFixed(1)}x its dispatches' floor`,
);
const errors = [...webGpuErrors()];
await useBackend('cpu');
releaseWebGpu();
if (errors.length > 0) {
  console.error(`WebGPU errors (the figures above are void):\n${errors.slice(0, 5).join('\n')}`);
  process.exit(1);
}
process.exit(0);

/** Per variant: the median host ms of a LoRA forward + backward + gradient read, and its kernel counts. */
async function loraSteps(variants) {
  const p = opt.dropout ? 0.1 : 0;
  const drops = { embdPdrop: p, attnPdrop: p, residPdrop: p };
  const config = { ...GPT2_SMALL, nLayer: layers, vocabSize: 8192, ...drops };
  const [B, T] = [1, 64];
  const { model, params, batch } = await loraGpt2(config, B, T);
  const scheduled = new ScheduledGradients(model, params);
  // Its first ~10 steps run 4-6x slower than the rest (the process is still settling
  // after the model's upload: garbage collection of the weights' host copies, Dawn): 20
  // warm-up steps, where the tape's variants come after and need 3.
  const hand = [];
  for (let i = 0; i < 20 + steps; i++) {
    const t0 = performance.now();
    scheduled.add(batch, i);
    await scheduled.take();
    if (i >= 20) hand.push(performance.now() - t0);
  }
  const plan = { ms: median(hand), dispatches: scheduled.dispatches, bytes: scheduled.planBytes };
  scheduled.dispose();
  variants = variants.filter((v) => !v.scheduled);
  let seed = 0; // a new mask per step (with --dropout)
  const step = ({ fused, shared }) => {
    useFusedAttention(fused);
    if (shared) installSharedClone(tf);
    else uninstallSharedClone(tf);
    const pass = opt.dropout ? { training: true, seed: seed++ } : {};
    return lossAndGradsAsync(params, () => tokenNllSum(model, batch, pass));
  };
  for (let i = 0; i < 3; i++) for (const v of variants) await step(v);
  const times = variants.map(() => []);
  for (let i = 0; i < steps; i++) {
    for (const [c, v] of variants.entries()) {
      const t0 = performance.now();
      await step(v);
      times[c].push(performance.now() - t0);
    }
  }
  // Which kernels dispatch: count the backend's dispatches over one step.
  const backend = tf.backend();
  const dispatch = backend.recordAndSubmit.bind(backend);
  const out = [];
  let tapePeak = 0;
  for (const [c, v] of variants.entries()) {
    let dispatches = 0;
    backend.recordAndSubmit = (...args) => {
      dispatches += 1;
      return dispatch(...args);
    };
    const before = tf.memory().numBytes;
    const info = await tf.profile(() => step(v));
    backend.recordAndSubmit = dispatch;
    if (c === 0) tapePeak = info.peakBytes - before;
    out.push({ ms: median(times[c]), kernels: info.kernels.length, dispatches });
  }
  useFusedAttention(true);
  installSharedClone(tf);
  out.push({ ms: plan.ms, kernels: plan.dispatches, dispatches: plan.dispatches });
  model.dispose();
  return { results: out, memory: { tape: tapePeak, plan: plan.bytes } };
}

/** Median us per bare dispatch over `count` dispatches issued straight to tfjs's Dawn device. */
async function bareDispatches(count) {
  const device = tf.backend().device;
  const { GPUBufferUsage } = globalThis; // Dawn's globals, installed by useBackend('webgpu')
  const module = device.createShaderModule({
    code: `
      @group(0) @binding(0) var<storage, read_write> y : array<f32>;
      @group(0) @binding(1) var<storage, read> x : array<f32>;
      struct U { scale : f32, n : i32 }
      @group(0) @binding(2) var<uniform> u : U;
      @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id : vec3u) {
        if (i32(id.x) < u.n) { y[id.x] = x[id.x] * u.scale; }
      }`,
  });
  const pipeline = device.createComputePipeline({
    layout: 'auto',
    compute: { module, entryPoint: 'main' },
  });
  const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const buffers = Array.from({ length: 8 }, () =>
    device.createBuffer({ size: 256, usage: storage }),
  );
  const uniforms = Array.from({ length: 16 }, () =>
    device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST }),
  );
  const data = new Float32Array([0.5, 0, 0, 0]);
  new Int32Array(data.buffer)[1] = 64;
  const run = async () => {
    let encoder = device.createCommandEncoder();
    let pass = encoder.beginComputePass();
    for (let i = 0; i < count; i++) {
      const uniform = uniforms[i % uniforms.length];
      device.queue.writeBuffer(uniform, 0, data);
      const group = device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: buffers[i % 8] } },
          { binding: 1, resource: { buffer: buffers[(i + 1) % 8] } },
          { binding: 2, resource: { buffer: uniform } },
        ],
      });
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(1);
      if ((i + 1) % 15 === 0) {
        pass.end();
        device.queue.submit([encoder.finish()]);
        encoder = device.createCommandEncoder();
        pass = encoder.beginComputePass();
      }
    }
    pass.end();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  await run();
  const times = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await run();
    times.push(((performance.now() - t0) * 1000) / count);
  }
  for (const b of [...buffers, ...uniforms]) b.destroy();
  return median(times);
}
