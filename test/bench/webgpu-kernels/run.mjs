#!/usr/bin/env node
// The project's WGSL kernels against tfjs-backend-webgpu's stock path, in one
// run on one adapter: every matmul shape of the LoRA step (GPT-2 small, 8 x 512
// tokens), the LoRA linear forward + backward (c_attn, r=8) and the softmax
// cross-entropy over the vocabulary, GPT-2's LayerNorm and the MLP activations
// (gelu_new, SwiGLU; value + gradient), each as a
// ratio (stock time / project time: > 1 means the project is faster), with
// GFLOP/s and GB/s (the least traffic: A and B read once, C written once).
//   pnpm build && node test/bench/webgpu-kernels/run.mjs [--scale S] [--repeats N] [--out FILE]
// On SwiftShader (no GPU) the shapes are divided by --scale (default 8 there,
// 1 on a GPU) and the figures say nothing about a GPU: information only.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  causalAttention,
  LoraLinear,
  crossEntropyRows,
  fusedNorm,
  geluNew,
  swiglu,
  selectWebGpuMatMul,
  splitCount,
  rankForm,
  useRankProducts,
  tileName,
  chooseTile,
  LORAFLEET_MATMUL,
  tileTable,
  useFusedActivations,
  useFusedAttention,
  useFusedCrossEntropy,
  useFusedLoraLinear,
  useFusedNorm,
  useSplitK,
} from '../../../packages/core/dist/src/index.js';
import {
  bytes,
  closeWebGpu,
  flops,
  matmulShapes,
  openWebGpu,
  operands,
  peakOf,
  tf,
  timeGpu,
} from './common.mjs';

const HELP = `usage: node test/bench/webgpu-kernels/run.mjs [options]
  --scale S     divide every size by S (default: 1 on a GPU, 8 on SwiftShader)
  --repeats N   timed repeats per kernel, median taken (default 5)
  --out FILE    also write the results as JSON
  --help        this text
Env LORAFLEET_WEBGPU_TILES=FILE uses a tile table from tile-sweep.mjs.`;

const { values: opt } = parseArgs({
  options: {
    scale: { type: 'string' },
    repeats: { type: 'string', default: '5' },
    out: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (opt.help) {
  console.log(HELP);
  process.exit(0);
}
const repeats = Number(opt.repeats);
if (!Number.isInteger(repeats) || repeats < 1)
  throw new Error(`--repeats must be >= 1, got ${opt.repeats}`);

const adapter = await openWebGpu();
const software = /swiftshader/i.test(adapter);
const scale = Number(opt.scale ?? (software ? 8 : 1));
if (!(scale >= 1)) throw new Error(`--scale must be >= 1, got ${opt.scale}`);
const peak = peakOf(adapter);

/** Times `fn` with BatchMatMul answered by `which`. */
async function timed(which, fn) {
  selectWebGpuMatMul(which);
  try {
    return await timeGpu(fn, { repeats });
  } finally {
    selectWebGpuMatMul('project');
  }
}

async function matmuls() {
  const rows = [];
  for (const shape of matmulShapes(scale)) {
    const [name, batch, m, k, n, tA, tB] = shape;
    const { a, b } = operands(shape);
    const run = () => tf.matMul(a, b, tA, tB);
    const project = await timed('project', run);
    const stock = await timed('stock', run);
    const splits = splitCount(
      { m, n, k, batch, transposeA: tA, transposeB: tB },
      chooseTile(m, n, k, batch),
    );
    let unsplit;
    if (splits > 1) {
      useSplitK(false);
      unsplit = await timed('project', run).finally(() => useSplitK(true));
    }
    // Rank-sized products: the rank-sized kernel (the default) against the tiled program (with split-k).
    const form = rankForm({ m, n, k, batch }, { transposeA: tA, transposeB: tB });
    let tiled;
    if (form) {
      useRankProducts(false);
      tiled = await timed('project', run).finally(() => useRankProducts(true));
    }
    tf.dispose([a, b]);
    const tile = form ? `rank ${form}` : tileName(chooseTile(m, n, k, batch));
    rows.push({
      name,
      batch,
      m,
      k,
      n,
      transposeA: tA,
      transposeB: tB,
      tile,
      project,
      stock,
      splits,
      unsplit,
      form,
      tiled,
      flops: flops(shape),
      bytes: bytes(shape),
    });
  }
  return rows;
}

/** c_attn's LoRA linear, forward + backward (dx, dA, dB), three ways. */
async function loraLinear() {
  const s = (v) => Math.max(1, Math.round(v / scale));
  const [n, inF, outF, r] = [s(8 * 512), s(768), s(3 * 768), 8];
  const layer = new LoraLinear({
    name: 'bench.c_attn',
    weight: tf.randomNormal([inF, outF]),
    bias: tf.randomNormal([outF]),
    fanInFanOut: true,
  });
  const adapterValues = (size) => Float32Array.from({ length: size }, () => Math.random() - 0.5);
  layer.loadAdapter(
    'default',
    { r, alpha: 16, dropout: 0, rslora: false },
    adapterValues(r * inF),
    adapterValues(outF * r),
  );
  const { a, b } = layer.activeAdapter;
  const x = tf.variable(tf.randomNormal([n, inF]), true);
  const step = () => {
    const { value, grads } = tf.variableGrads(() => tf.sum(layer.forward(x)), [x, a, b]);
    return [value, ...Object.values(grads)];
  };
  const variant = async (which, fused) => {
    useFusedLoraLinear(fused);
    try {
      return await timed(which, step);
    } finally {
      useFusedLoraLinear(true);
    }
  };
  const fused = await variant('project', true);
  const unfusedProject = await variant('project', false);
  const stock = await variant('stock', false);
  layer.dispose();
  x.dispose();
  // Forward 2 n in out + 2 n r (in + out); backward dx 2 n out in + the rank-r products (x3).
  const flopCount = 4 * n * inF * outF + 3 * 2 * n * r * (inF + outF);
  const byteCount = 4 * (2 * n * inF + 2 * n * outF + inF * outF);
  return { n, inF, outF, r, fused, unfusedProject, stock, flops: flopCount, bytes: byteCount };
}

/** The loss over GPT-2's vocabulary, value + d/dlogits: fused vs tfjs's logSoftmax + gather. */
async function crossEntropy() {
  const s = (v) => Math.max(1, Math.round(v / scale));
  const [n, v] = [s(8 * 511), s(50257)];
  const logits = tf.randomNormal([n, v]);
  const labels = Int32Array.from({ length: n }, (_, i) => (i % 10 === 0 ? -100 : (i * 7919) % v));
  const index = tf.tensor1d(
    Int32Array.from(labels, (l, row) => row * v + Math.max(l, 0)),
    'int32',
  );
  const weight = tf.tensor1d(Float32Array.from(labels, (l) => (l < 0 ? 0 : 1)));
  const stockLoss = (x) =>
    tf.neg(tf.sum(tf.mul(tf.gather(tf.logSoftmax(x).reshape([n * v]), index), weight)));
  const fusedLoss = (x) => tf.sum(crossEntropyRows(x, labels));
  const step = (f) => () => {
    const { value, grad } = tf.valueAndGrad(f)(logits);
    return [value, grad];
  };
  const fused = await timeGpu(step(fusedLoss), { repeats });
  useFusedCrossEntropy(false);
  const stock = await timeGpu(step(stockLoss), { repeats });
  useFusedCrossEntropy(true);
  tf.dispose([logits, index, weight]);
  // Least traffic: read the logits twice (forward, backward), write the gradient once.
  return { n, v, fused, stock, bytes: 3 * 4 * n * v };
}

/**
 * The LM head's gradient product d hidden = dlogits [N, V] x wte [V, C] with
 * V not a multiple of 4 (GPT-2's 50,257): from rows padded to a multiple of
 * 4 (lda, the hand-scheduled step's layout: vec4 loads) against unpadded
 * rows (scalar loads), both on the project's matmul.
 */
async function headGradient() {
  const s = (v) => Math.max(1, Math.round(v / scale));
  const [n, c] = [s(8 * 512), s(768)];
  const v = s(50257) % 4 === 0 ? s(50257) + 1 : s(50257);
  const width = Math.ceil(v / 4) * 4;
  const head = tf.randomNormal([v, c]);
  const dl = tf.randomNormal([n, v]);
  const padded = tf.pad(dl, [
    [0, 0],
    [0, width - v],
  ]);
  const attrs = { transposeA: false, transposeB: false, alpha: 1, beta: 0, transposeL: false };
  const strided = await timeGpu(
    () => tf.engine().runKernel(LORAFLEET_MATMUL, { a: padded, b: head }, { ...attrs, lda: width }),
    { repeats },
  );
  const plain = await timeGpu(() => tf.matMul(dl, head), { repeats });
  tf.dispose([head, dl, padded]);
  return { n, v, c, width, strided, plain, flops: 2 * n * v * c };
}

/** GPT-2's LayerNorm over [tokens, 768], value + d/dx: fused vs tfjs's formula (models' layerNorm). */
async function layerNorm() {
  const s = (v) => Math.max(1, Math.round(v / scale));
  const [n, c] = [s(8 * 512), s(768)];
  const x = tf.randomNormal([n, c]);
  const gamma = tf.randomNormal([c]);
  const beta = tf.randomNormal([c]);
  const stock = (t) => {
    const centered = tf.sub(t, tf.mean(t, -1, true));
    const variance = tf.mean(tf.square(centered), -1, true);
    return tf.add(tf.mul(tf.mul(centered, tf.rsqrt(tf.add(variance, 1e-5))), gamma), beta);
  };
  const fused = (t) => fusedNorm(t, gamma, beta, 1e-5, 'layer');
  const step = (f) => () => {
    const { value, grad } = tf.valueAndGrad((t) => tf.sum(f(t)))(x);
    return [value, grad];
  };
  const fusedTime = await timeGpu(step(fused), { repeats });
  useFusedNorm(false);
  const stockTime = await timeGpu(step(stock), { repeats });
  useFusedNorm(true);
  tf.dispose([x, gamma, beta]);
  // Least traffic: x read twice and y written (forward), x, dy read and dx written (backward).
  return { n, c, fused: fusedTime, stock: stockTime, bytes: 6 * 4 * n * c };
}

/** The MLP activations over [tokens, 3072], value + gradient(s): fused vs tfjs's composed ops. */
async function activations() {
  const s = (v) => Math.max(1, Math.round(v / scale));
  const [n, f] = [s(8 * 512), s(3072)];
  const [x, up] = [tf.randomNormal([n, f]), tf.randomNormal([n, f])];
  const cases = {
    gelu_new: { inputs: [x], fn: (t) => geluNew(t), tensors: 3 },
    swiglu: { inputs: [x, up], fn: (g, u) => swiglu(g, u), tensors: 7 },
  };
  const out = [];
  for (const [name, c] of Object.entries(cases)) {
    const step = () => {
      const { value, grads } = tf.valueAndGrads((...t) => tf.sum(c.fn(...t)))(c.inputs);
      return [value, ...grads];
    };
    const fused = await timeGpu(step, { repeats });
    useFusedActivations(false);
    const stock = await timeGpu(step, { repeats });
    useFusedActivations(true);
    // Least traffic: each input read in forward and backward, y and each gradient written.
    out.push({ name, n, f, fused, stock, bytes: c.tensors * 4 * n * f });
  }
  tf.dispose([x, up]);
  return out;
}

/**
 * Causal attention over GPT-2 small's heads ([8, 12, 512, 64]), value + the
 * gradients of q, k and v: fused (no [T, T] tensor) vs tfjs's composed ops;
 * with the peak of tfjs's allocated bytes over one call of each.
 */
async function attention() {
  const s = (v) => Math.max(1, Math.round(v / scale));
  const shape = [8, 12, s(512), 64];
  const T = shape[2];
  const [q, k, v] = [0, 1, 2].map(() => tf.randomNormal(shape));
  const mask = tf.tidy(() =>
    tf.mul(
      tf.cast(
        tf.greater(tf.range(0, T).reshape([1, T]), tf.range(0, T).reshape([T, 1])),
        'float32',
      ),
      -1e9,
    ),
  );
  const options = { scale: 1 / 8, mask };
  const step = () => {
    const { value, grads } = tf.valueAndGrads((a, b, c) =>
      tf.sum(causalAttention(a, b, c, options)),
    )([q, k, v]);
    return [value, ...grads];
  };
  const peakBytes = async () => (await tf.profile(() => tf.dispose(step()))).peakBytes;
  const fused = await timeGpu(step, { repeats });
  const fusedPeak = await peakBytes();
  useFusedAttention(false);
  const stock = await timeGpu(step, { repeats });
  const stockPeak = await peakBytes();
  useFusedAttention(true);
  tf.dispose([q, k, v, mask]);
  // Arithmetic of the composed path: q k^T and p v forward, four such products backward (causal: half).
  const flops = (6 * 2 * shape[0] * shape[1] * T * T * shape[3]) / 2;
  return { shape, fused, stock, fusedPeak, stockPeak, flops };
}

const gflops = (f, t) => f / t / 1e9;
const fmt = (v, d = 1) => v.toFixed(d).padStart(8);

const mm = await matmuls();
const lora = await loraLinear();
const xent = await crossEntropy();
const headGrad = await headGradient();
const norm = await layerNorm();
const acts = await activations();
const attn = await attention();
const errors = await closeWebGpu();

console.log(
  `webgpu kernels vs stock tfjs-webgpu on "${adapter}", sizes / ${scale}, median of ${repeats}`,
);
console.log(`tile table: ${tileTable().source}`);
if (software)
  console.log(
    'SwiftShader runs WGSL on the CPU: these figures are information only, not GPU speed',
  );
console.log(
  'kernel                              batch     M     K     N  tile                ours ms  stock ms   ratio  ours GFLOP/s  stock GFLOP/s  ours GB/s' +
    (peak ? '  % fp32 peak' : ''),
);
for (const r of mm) {
  const line = `${r.name.padEnd(34)} ${String(r.batch).padStart(5)} ${String(r.m).padStart(5)} ${String(r.k).padStart(5)} ${String(r.n).padStart(5)}  ${r.tile.padEnd(18)} ${fmt(r.project * 1e3, 3)} ${fmt(r.stock * 1e3, 3)} ${fmt(r.stock / r.project, 2)} ${fmt(gflops(r.flops, r.project)).padStart(13)} ${fmt(gflops(r.flops, r.stock)).padStart(14)} ${fmt(r.bytes / r.project / 1e9).padStart(10)}`;
  console.log(
    line + (peak ? `  ${fmt((100 * gflops(r.flops, r.project)) / (peak * 1e3), 1)}` : ''),
  );
}
for (const r of mm.filter((row) => row.form)) {
  console.log(
    `rank-sized ${r.name}: ${r.form} kernel ${fmt(r.project * 1e3, 3)} ms (${fmt(r.bytes / r.project / 1e9)} GB/s), ` +
      `tiled program ${fmt(r.tiled * 1e3, 3)} ms (${fmt(r.bytes / r.tiled / 1e9)} GB/s); ratio ${(r.tiled / r.project).toFixed(2)}`,
  );
}
for (const r of mm.filter((row) => row.splits > 1 && !row.form)) {
  console.log(
    `split-k ${r.name}: ${r.splits} chunks ${fmt(r.project * 1e3, 3)} ms, unsplit ${fmt(r.unsplit * 1e3, 3)} ms; ` +
      `ratio ${(r.unsplit / r.project).toFixed(2)}`,
  );
}
console.log(
  `LoRA linear fwd+bwd [${lora.n}, ${lora.inF}] -> ${lora.outF}, r=${lora.r}: fused ${fmt(lora.fused * 1e3, 3)} ms, ` +
    `unfused on project matmuls ${fmt(lora.unfusedProject * 1e3, 3)} ms, stock ${fmt(lora.stock * 1e3, 3)} ms; ` +
    `ratio stock/fused ${(lora.stock / lora.fused).toFixed(2)}, ${gflops(lora.flops, lora.fused).toFixed(1)} GFLOP/s, ` +
    `${(lora.bytes / lora.fused / 1e9).toFixed(1)} GB/s`,
);
console.log(
  `softmax cross-entropy fwd+bwd [${xent.n}, ${xent.v}]: fused ${fmt(xent.fused * 1e3, 3)} ms, ` +
    `stock (logSoftmax + gather) ${fmt(xent.stock * 1e3, 3)} ms; ratio ${(xent.stock / xent.fused).toFixed(2)}, ` +
    `${(xent.bytes / xent.fused / 1e9).toFixed(1)} GB/s`,
);
console.log(
  `LM head gradient [${headGrad.n}, ${headGrad.v}] x [${headGrad.v}, ${headGrad.c}]: rows padded to ${headGrad.width} ` +
    `(vec4) ${fmt(headGrad.strided * 1e3, 3)} ms, ${gflops(headGrad.flops, headGrad.strided).toFixed(1)} GFLOP/s; ` +
    `unpadded (scalar) ${fmt(headGrad.plain * 1e3, 3)} ms, ${gflops(headGrad.flops, headGrad.plain).toFixed(1)} GFLOP/s; ` +
    `ratio ${(headGrad.plain / headGrad.strided).toFixed(2)}`,
);
console.log(
  `layernorm fwd+bwd [${norm.n}, ${norm.c}]: fused ${fmt(norm.fused * 1e3, 3)} ms, ` +
    `stock ${fmt(norm.stock * 1e3, 3)} ms; ratio ${(norm.stock / norm.fused).toFixed(2)}, ` +
    `${(norm.bytes / norm.fused / 1e9).toFixed(1)} GB/s`,
);
for (const a of acts) {
  console.log(
    `${a.name} fwd+bwd [${a.n}, ${a.f}]: fused ${fmt(a.fused * 1e3, 3)} ms, ` +
      `stock ${fmt(a.stock * 1e3, 3)} ms; ratio ${(a.stock / a.fused).toFixed(2)}, ` +
      `${(a.bytes / a.fused / 1e9).toFixed(1)} GB/s`,
  );
}
console.log(
  `causal attention fwd+bwd [${attn.shape}]: fused ${fmt(attn.fused * 1e3, 3)} ms, ` +
    `stock (composed) ${fmt(attn.stock * 1e3, 3)} ms; ratio ${(attn.stock / attn.fused).toFixed(2)}, ` +
    `${gflops(attn.flops, attn.fused).toFixed(1)} GFLOP/s; peak tfjs bytes ${(attn.fusedPeak / 2 ** 20).toFixed(1)} MiB ` +
    `vs ${(attn.stockPeak / 2 ** 20).toFixed(1)} MiB`,
);
if (errors.length > 0) {
  console.error(`WebGPU errors: ${errors.join('; ')}`);
  process.exitCode = 1;
}
if (opt.out) {
  const result = {
    adapter,
    scale,
    repeats,
    software,
    peakTflops: peak,
    tileTable: tileTable().source,
    matmuls: mm,
    loraLinear: lora,
    crossEntropy: xent,
    headGradient: headGrad,
    layerNorm: norm,
    activations: acts,
    attention: attn,
    errors,
    date: new Date().toISOString(),
  };
  writeFileSync(opt.out, JSON.stringify(result, null, 2));
}
