// One child of run.mjs: tfjs-wasm's 2-D matmul speed in GFLOP/s (median of
// REPEATS), the limit a step made of matmuls could reach on one core. Runs
// with the project's kernels registered (@lorafleet/core), as the step does.
//   node roofline.mjs REPEATS
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const core = await import(join(root, 'packages/core/dist/src/index.js'));
const { tf } = core;
await core.useBackend('wasm');
const repeats = Number(process.argv[2]);

/** GFLOP/s of [m, k] x [k, n], median of `repeats` after one warm-up. */
function gflops(m, k, n) {
  const a = tf.randomNormal([m, k]);
  const b = tf.randomNormal([k, n]);
  const times = [];
  for (let i = 0; i <= repeats; i++) {
    const t = performance.now();
    const c = tf.matMul(a, b);
    c.dataSync();
    if (i > 0) times.push(performance.now() - t);
    c.dispose();
  }
  tf.dispose([a, b]);
  times.sort((x, y) => x - y);
  return (2 * m * k * n) / times[Math.floor(times.length / 2)] / 1e6;
}

console.log(
  JSON.stringify({
    // BENCHMARKS.md's reference shape (25-32 GFLOP/s on one core here).
    square1024: gflops(1024, 1024, 1024),
    // The step's own widest product at 8 x 128 tokens, width 256: c_fc.
    step1024x256x1024: gflops(1024, 256, 1024),
  }),
);
