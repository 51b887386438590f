// Shared by run.mjs and tile-sweep.mjs: open the webgpu backend (the GPU
// machine's driver, else SwiftShader), time a tfjs closure on the GPU, and the
// shapes of the LoRA step (GPT-2 small, 8 x 512 tokens, LoRA r=8 on c_attn).
import {
  deviceInfo,
  Rng,
  TrainableParameters,
  releaseWebGpu,
  settleDevice,
  tf,
  useBackend,
  webGpuErrors,
} from '../../../packages/core/dist/src/index.js';
import { requireVulkanDriver } from '../../../packages/core/dist/src/testing/index.js';
import { Gpt2Model, addLora, randomGpt2Weights } from '../../../packages/models/dist/src/index.js';

/** Starts webgpu; returns the adapter's name. */
export async function openWebGpu() {
  requireVulkanDriver(); // keeps a GPU machine's VK_DRIVER_FILES; SwiftShader otherwise
  await useBackend('webgpu');
  tf.env().set('WEBGPU_CPU_FORWARD', false);
  return deviceInfo().name;
}

export async function closeWebGpu() {
  const errors = [...webGpuErrors()];
  await useBackend('cpu');
  releaseWebGpu();
  return errors;
}

/**
 * Median seconds of one call of `fn` (which returns the tensors it made), after
 * warmup. Each timing runs `fn` enough times back to back (up to 64) that the
 * wait for the queue is a small part of it, then waits for the GPU to finish
 * without reading anything back (settleDevice: submit, onSubmittedWorkDone), so
 * no output copy to the CPU is in the figure.
 */
export async function timeGpu(fn, { warmup = 2, repeats = 5 } = {}) {
  const timed = async (calls) => {
    const t0 = performance.now();
    for (let j = 0; j < calls; j++) tf.dispose(fn());
    await settleDevice();
    return (performance.now() - t0) / 1000 / calls;
  };
  let first = 0;
  for (let i = 0; i < Math.max(1, warmup); i++) first = await timed(1);
  const calls = Math.min(64, Math.max(1, Math.ceil(0.005 / Math.max(first, 1e-6))));
  const times = [];
  for (let i = 0; i < repeats; i++) times.push(await timed(calls));
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** Matmul shapes: [name, batch, M, K, N, transposeA, transposeB]. `scale` divides M, K, N (SwiftShader). */
export function matmulShapes(scale) {
  const s = (v) => Math.max(1, Math.round(v / scale));
  const N = s(8 * 512); // tokens
  const C = s(768);
  const T = s(512);
  return [
    ['square 1024', 1, s(1024), s(1024), s(1024), false, false],
    ['square 4096', 1, s(4096), s(4096), s(4096), false, false],
    ['c_attn x W', 1, N, C, 3 * C, false, false],
    ['c_attn dx = dy W^T', 1, N, 3 * C, C, false, true],
    ['mlp c_fc x W', 1, N, C, 4 * C, false, false],
    ['mlp c_proj dy^T h (dW shape)', 1, 4 * C, N, C, true, false],
    ['attn Q K^T', 8 * 12, T, s(64), T, false, true],
    ['attn P V', 8 * 12, T, T, s(64), false, false],
    ['lora x A^T (N x r)', 1, N, C, 8, false, true],
    ['lora dh = s dy B (N x r)', 1, N, 3 * C, 8, false, false],
    ['lora dA = dh^T x (r x in)', 1, 8, N, C, true, false],
    ['lora dB = dy^T h (out x r)', 1, 3 * C, N, 8, true, false],
  ];
}

/** Random operands of a matmul shape. */
export function operands([, batch, m, k, n, tA, tB]) {
  const lead = batch > 1 ? [batch] : [];
  const a = tf.randomNormal([...lead, ...(tA ? [k, m] : [m, k])]);
  const b = tf.randomNormal([...lead, ...(tB ? [n, k] : [k, n])]);
  return { a, b };
}

export const flops = ([, batch, m, k, n]) => 2 * batch * m * k * n;
/** The least traffic: read A and B once, write C once (float32). */
export const bytes = ([, batch, m, k, n]) => 4 * batch * (m * k + k * n + m * n);

/** fp32 peak TFLOP/s of cards the GPU check meets (vendor figures, dense, no tensor cores). */
export const FP32_PEAK_TFLOPS = { H200: 67, H100: 67, A100: 19.5 };

export function peakOf(adapter) {
  const hit = Object.keys(FP32_PEAK_TFLOPS).find((k) => adapter.includes(k));
  return hit ? FP32_PEAK_TFLOPS[hit] : null;
}

export { tf };

/**
 * The LoRA step's benchmark model: a GPT-2 of `config` (random weights), LoRA
 * r=8 on c_attn, and a batch of B x T random token ids (labels = ids), as the
 * GPU check (test/gpu/gpu.mjs) and the host benchmark (host.mjs) train it.
 */
export async function loraGpt2(config, B, T) {
  const model = new Gpt2Model(config, randomGpt2Weights(config, 0));
  const layers = await addLora(
    model.linears(),
    'default',
    { r: 8, alpha: 16, dropout: 0, rslora: false },
    { kind: 'kaiming' },
    ['c_attn'],
    0,
  );
  const params = TrainableParameters.fromLoraLayers(layers);
  const rng = new Rng(7);
  const ids = Int32Array.from({ length: B * T }, () =>
    Math.floor(rng.uniform() * config.vocabSize),
  );
  return { model, params, batch: { ids, labels: ids, batchSize: B, seqLen: T } };
}
