#!/usr/bin/env node
// The device memory of the hand-scheduled GPT-2 LoRA step at the GPU check's
// shape (GPT-2 small, 8 x 512 tokens, LoRA r=8 on c_attn), without a GPU: the
// step's plan is recorded with nothing uploaded (scheduledStepBytes), and its
// buffers' bytes after sharing by liveness are added to the weights'. The
// peer is PyTorch + PEFT's torch.cuda.max_memory_allocated at the same shape
// on the H200 (docs/gpu-runs/2026-12-04-h200/run3-torch.json): a projection,
// not a measurement of this project on a GPU (Dawn and tfjs add their own).
//   pnpm build && node test/bench/webgpu-kernels/plan-memory.mjs [--batch B] [--seq T]
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { releaseWebGpu, useBackend } from '../../../packages/core/dist/src/index.js';
import { GPT2_SMALL, scheduledStepBytes } from '../../../packages/models/dist/src/index.js';
import { loraGpt2 } from './common.mjs';

const { values: opt } = parseArgs({
  options: {
    batch: { type: 'string', default: '8' },
    seq: { type: 'string', default: '512' },
    help: { type: 'boolean', default: false },
  },
});
if (opt.help) {
  console.log('usage: node test/bench/webgpu-kernels/plan-memory.mjs [--batch 8] [--seq 512]');
  process.exit(0);
}
const [B, T] = [Number(opt.batch), Number(opt.seq)];
for (const [name, v] of [
  ['--batch', B],
  ['--seq', T],
]) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer`);
}
await useBackend('webgpu', { dawnFlags: ['backend=null'] }); // compiles pipelines, runs nothing
const config = { ...GPT2_SMALL, embdPdrop: 0, attnPdrop: 0, residPdrop: 0 };
const { model, params } = await loraGpt2(config, B, T);
const plan = scheduledStepBytes(model, params, B, T);
const weights = model.parameterCount() * 4;
const gib = (x) => `${(x / 2 ** 30).toFixed(2)} GiB`;
const torchFile = fileURLToPath(
  import.meta.resolve('../../../docs/gpu-runs/2026-12-04-h200/run3-torch.json'),
);
const torch = JSON.parse(readFileSync(torchFile, 'utf8')).maxMemoryAllocated;
console.log(
  `GPT-2 small, ${B} x ${T} tokens, LoRA r=8 on c_attn: the plan's buffers ${gib(plan.shared)} ` +
    `(${gib(plan.unshared)} if no two values shared memory; ${plan.dispatches} dispatches), ` +
    `weights ${gib(weights)}: ${gib(plan.shared + weights)}`,
);
if (B === 8 && T === 512)
  console.log(
    `PyTorch + PEFT fp32 max_memory_allocated at this shape on the H200 (2026-12-04): ${gib(torch)}; ` +
      `plan + weights / PyTorch = ${((plan.shared + weights) / torch).toFixed(2)}x (a projection: no GPU ran this)`,
  );
model.dispose();
await useBackend('cpu');
releaseWebGpu();
process.exit(0);
