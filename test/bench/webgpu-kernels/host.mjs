#!/usr/bin/env node
// The host's cost of a LoRA step on webgpu, against Dawn's own floor: on an
// H200 the step is bound by issuing its ~1,800 kernels (docs/webgpu-kernels.md,
// "Where a step's time goes"), and that cost is the CPU's, so it can be
// measured without a GPU. Dawn's null adapter (default here) runs no shader:
// the time of a step is what tfjs, the project's kernel functions and Dawn's
// API calls take. The peer, in the same process: the same number of bare
// dispatches issued straight to Dawn as tfjs issues them (a bind group and a
// uniform write per dispatch, a submit every 15), the floor of any framework
// on this device API. Model: GPT-2 small's layout (12 layers, 768 wide,
// 12 heads, LoRA r=8 on c_attn) at 1 x 64 tokens and an 8,192-word
// vocabulary (the null adapter's limits), whose kernel count is the full
// shape's.
//   pnpm build && node test/bench/webgpu-kernels/host.mjs [--steps N] [--gpu]
import { parseArgs } from 'node:util';
import {
  installSharedClone,
  lossAndGradsAsync,
  releaseWebGpu,
  uninstallSharedClone,
  tf,
  useBackend,
  useFusedAttention,
} from '../../../packages/core/dist/src/index.js';
import { GPT2_SMALL, tokenNllSum } from '../../../packages/models/dist/src/index.js';
import { loraGpt2 } from './common.mjs';

const HELP = `usage: node test/bench/webgpu-kernels/host.mjs [options]
  --steps N   timed steps (default 20), after 3 warm-up steps
  --gpu       the machine's adapter instead of Dawn's null adapter (the step's
              host time then includes waiting for the GPU)
  --help      this text`;
const { values: opt } = parseArgs({
  options: {
    steps: { type: 'string', default: '20' },
    gpu: { type: 'boolean', default: false },
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
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

await useBackend('webgpu', opt.gpu ? {} : { dawnFlags: ['backend=null'] });
// Variants of the same step, interleaved step by step on one model: the defaults; tfjs's
// composed attention; tfjs's own clone of every tensor saved for backward (a kernel run each).
const VARIANTS = [
  { name: '', fused: true, shared: true },
  { name: ' (attention composed of tfjs ops)', fused: false, shared: true },
  { name: " (tfjs's clone of saved tensors: an Identity kernel each)", fused: true, shared: false },
];
const results = await loraSteps(VARIANTS);
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
  `bare Dawn dispatches (bind group + uniform write each, submit every 15): ${dawnUs.toFixed(1)} us each; ` +
    `the step's host time is ${((1000 * stepMs.ms) / stepMs.dispatches / dawnUs).toFixed(1)}x its dispatches' floor`,
);
await useBackend('cpu');
releaseWebGpu();
process.exit(0);

/** Per variant: the median host ms of a LoRA forward + backward + gradient read, and its kernel counts. */
async function loraSteps(variants) {
  const config = { ...GPT2_SMALL, vocabSize: 8192, embdPdrop: 0, attnPdrop: 0, residPdrop: 0 };
  const [B, T] = [1, 64];
  const { model, params, batch } = await loraGpt2(config, B, T);
  const step = ({ fused, shared }) => {
    useFusedAttention(fused);
    if (shared) installSharedClone(tf);
    else uninstallSharedClone(tf);
    return lossAndGradsAsync(params, () => tokenNllSum(model, batch));
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
  for (const [c, v] of variants.entries()) {
    let dispatches = 0;
    backend.recordAndSubmit = (...args) => {
      dispatches += 1;
      return dispatch(...args);
    };
    const info = await tf.profile(() => step(v));
    backend.recordAndSubmit = dispatch;
    out.push({ ms: median(times[c]), kernels: info.kernels.length, dispatches });
  }
  useFusedAttention(true);
  installSharedClone(tf);
  model.dispose();
  return out;
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
