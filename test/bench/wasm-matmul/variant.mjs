// One variant of run.mjs: prints {nn, nt, tn} in GFLOP/s as its last line.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [variant, repeatsArg] = process.argv.slice(2);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
let tf;
if (variant === 'project') {
  ({ tf } = await import(join(root, 'packages/core/dist/src/index.js')));
} else {
  // Resolved from packages/core's own dependencies, without the project's kernels.
  const { createRequire } = await import('node:module');
  const require = createRequire(join(root, 'packages/core/package.json'));
  tf = require('@tensorflow/tfjs');
  require('@tensorflow/tfjs-backend-wasm');
}
tf.env().set('PROD', true);
await tf.setBackend('wasm');
await tf.ready();
const repeats = Number(repeatsArg);
const a = tf.randomNormal([1024, 1024]);
const b = tf.randomNormal([1024, 256]);
const bT = tf.randomNormal([256, 1024]);
const aT = tf.randomNormal([1024, 1024]);
const flops = 2 * 1024 * 1024 * 256;
function gflops(f) {
  f().dispose();
  const times = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    const r = f();
    r.dataSync();
    times.push(performance.now() - t);
    r.dispose();
  }
  times.sort((x, y) => x - y);
  return flops / times[Math.floor(times.length / 2)] / 1e6;
}
const out = {
  nn: gflops(() => tf.matMul(a, b)),
  nt: gflops(() => tf.matMul(a, bT, false, true)),
  tn: gflops(() => tf.matMul(aT, b, true, false)),
};
console.log(JSON.stringify(out));
