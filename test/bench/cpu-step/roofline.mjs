// One child of run.mjs: the wasm 2-D matmul speed in GFLOP/s (median of
// REPEATS), the limit a step made of matmuls could reach on one core: the
// project's route (tf.matMul: the SIMD kernel, packages/core/src/backend/
// wasm-matmul.ts) and tfjs-wasm's own XNNPACK kernel, each on two shapes.
//   node roofline.mjs REPEATS
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const core = await import(join(root, 'packages/core/dist/src/index.js'));
const { tf } = core;
await core.useBackend('wasm');
const repeats = Number(process.argv[2]);

const backend = tf.backend();
const xnnpack = tf.getKernel('BatchMatMul', 'wasm').stock;

/** GFLOP/s of [m, k] x [k, n] through `multiply`, median of `repeats` after one warm-up. */
function gflops(m, k, n, multiply) {
  const a = tf.randomNormal([m, k]);
  const b = tf.randomNormal([k, n]);
  const times = [];
  for (let i = 0; i <= repeats; i++) {
    const t = performance.now();
    multiply(a, b);
    if (i > 0) times.push(performance.now() - t);
  }
  tf.dispose([a, b]);
  times.sort((x, y) => x - y);
  return (2 * m * k * n) / times[Math.floor(times.length / 2)] / 1e6;
}
const project = (a, b) => tf.matMul(a, b).dispose();
const stock = (a, b) => {
  const out = xnnpack({
    inputs: { a, b },
    backend,
    attrs: { transposeA: false, transposeB: false },
  });
  backend.disposeData(out.dataId);
};

console.log(
  JSON.stringify({
    // BENCHMARKS.md's reference shape (25-32 GFLOP/s on one core here on XNNPACK).
    square1024: gflops(1024, 1024, 1024, project),
    // The step's own widest product at 8 x 128 tokens, width 256: c_fc.
    step1024x256x1024: gflops(1024, 256, 1024, project),
    xnnpackSquare1024: gflops(1024, 1024, 1024, stock),
    xnnpackStep1024x256x1024: gflops(1024, 256, 1024, stock),
  }),
);
