#!/usr/bin/env node
// The training step's 2-D products on wasm: tfjs's XNNPACK kernel (with an
// explicit transpose for a flag: the route before) against the project's SIMD
// kernel (what tf.matMul runs now: packages/core/src/backend/wasm-matmul.ts),
// interleaved call by call in one process, on the same tensors.
//   pnpm build && node test/bench/wasm-matmul/step-shapes.mjs [--repeats 9] [--width 256]
// Shapes: issue 17's tiny GPT-2 step (8 x 128 tokens, width 256, vocab 4096,
// LoRA r 8 on c_attn): every forward product, the backward's dX products,
// the LoRA products, and a 1-row product (generation).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    repeats: { type: 'string', default: '9' },
    width: { type: 'string', default: '256' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (opts.help) {
  console.log('usage: node test/bench/wasm-matmul/step-shapes.mjs [--repeats 9] [--width 256]');
  process.exit(0);
}
const repeats = Number(opts.repeats);
const C = Number(opts.width);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const core = await import(join(root, 'packages/core/dist/src/index.js'));
const { tf } = core;
await core.useBackend('wasm');
const backend = tf.backend();
const registered = tf.getKernel('BatchMatMul', 'wasm');
const stock = registered.stock;
if (!stock)
  throw new Error('BatchMatMul on wasm is not the project wrapper (no .stock): build first');

const N = 1024; // 8 x 128 tokens
const V = 4096;
const r = 8;
// [label, m, k, n, transposeA, transposeB]
const SHAPES = [
  ['c_attn x W', N, C, 3 * C, false, false],
  ['attn c_proj x W', N, C, C, false, false],
  ['c_fc x W', N, C, 4 * C, false, false],
  ['mlp c_proj x W', N, 4 * C, C, false, false],
  ['head x wte^T', N, C, V, false, true],
  ['dX c_attn: dY W^T', N, 3 * C, C, false, true],
  ['dX c_fc: dY W^T', N, 4 * C, C, false, true],
  ['dX head: dlogits wte', N, V, C, false, false],
  ['LoRA x A^T', N, C, r, false, true],
  ['LoRA (xA^T) B^T', N, r, 3 * C, false, true],
  ['dB: dY^T (xA^T)', 3 * C, N, r, true, false],
  ['dA: (dY B)^T x', r, N, C, true, false],
  ['generation: 1 row x W (XNNPACK in both)', 1, C, 3 * C, false, false],
  ['generation: 32 rows x W (XNNPACK in both)', 32, C, 3 * C, false, false],
  ['64 rows x W', 64, C, 3 * C, false, false],
  ['generation: 1 row x wte^T', 1, C, V, false, true],
];

/** The route before: an explicit transpose for a flag, then XNNPACK. */
function before(a, b, ta, tb) {
  const a2 = ta ? tf.transpose(a) : a;
  const b2 = tb ? tf.transpose(b) : b;
  const out = stock({
    inputs: { a: a2, b: b2 },
    backend,
    attrs: { transposeA: false, transposeB: false },
  });
  if (a2 !== a) a2.dispose();
  if (b2 !== b) b2.dispose();
  return out;
}

const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const rows = [];
let totalBefore = 0;
let totalNow = 0;
for (const [label, m, k, n, ta, tb] of SHAPES) {
  const a = tf.randomNormal(ta ? [k, m] : [m, k]);
  const b = tf.randomNormal(tb ? [n, k] : [k, n]);
  const timesBefore = [];
  const timesNow = [];
  let maxDiff = 0;
  for (let i = 0; i <= repeats; i++) {
    let t = performance.now();
    const old = before(a, b, ta, tb);
    const tOld = performance.now() - t;
    t = performance.now();
    const now = tf.matMul(a, b, ta, tb);
    const tNow = performance.now() - t;
    if (i === 0) {
      const x = backend.readSync(old.dataId);
      const y = now.dataSync();
      for (let j = 0; j < x.length; j++) maxDiff = Math.max(maxDiff, Math.abs(x[j] - y[j]));
    } else {
      timesBefore.push(tOld);
      timesNow.push(tNow);
    }
    backend.disposeData(old.dataId);
    now.dispose();
  }
  tf.dispose([a, b]);
  const gflop = (2 * m * k * n) / 1e9;
  const [mb, mn] = [median(timesBefore), median(timesNow)];
  totalBefore += mb;
  totalNow += mn;
  rows.push(
    `| ${label} | [${m}, ${k}] x [${k}, ${n}]${ta || tb ? ` (${ta ? 'A^T' : 'A'} ${tb ? 'B^T' : 'B'})` : ''} | ` +
      `${mb.toFixed(2)} | ${mn.toFixed(2)} | ${((gflop / mb) * 1e3).toFixed(1)} | ${((gflop / mn) * 1e3).toFixed(1)} | ` +
      `${(mb / mn).toFixed(2)}x | ${maxDiff.toExponential(1)} |`,
  );
}
const load = (await import('node:os'))
  .loadavg()
  .map((x) => x.toFixed(2))
  .join(' ');
console.log(
  `wasm 2-D products of the tiny step (width ${C}), median of ${repeats} calls each, interleaved; load average ${load}\n`,
);
console.log(
  '| product | shape | XNNPACK route ms | SIMD kernel ms | XNNPACK GFLOP/s | SIMD GFLOP/s | speed-up | max abs diff |',
);
console.log('|---|---|---|---|---|---|---|---|');
for (const row of rows) console.log(row);
console.log(
  `\nall products above, one call each: ${totalBefore.toFixed(1)} ms before, ${totalNow.toFixed(1)} ms now (${(totalBefore / totalNow).toFixed(2)}x)`,
);
