#!/usr/bin/env node
// Attention's batched products on tfjs-wasm, in one process and one run:
//   project: tf.matMul through the project's BatchMatMul (packages/core:
//            the SIMD kernel of assembly/batch-matmul.ts for batch > 1);
//   stock:   tfjs-backend-wasm 4.22's own BatchMatMul on the same tensors;
//   2-D:     the same flops as one 2-D product [B*H*m, k] x [k, n] on
//            XNNPACK (tfjs-wasm's fast path), the roofline to compare with.
// The three are interleaved repeat by repeat, so a loaded machine slows them
// alike. It prints GFLOP/s twice: the median of the repeats, and the best
// (the fastest repeat of each, i.e. the least disturbed by other work).
//   pnpm build && node test/bench/wasm-attention/run.mjs [--repeats 10] [--model tiny|default|all]
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  console.log(
    'usage: node test/bench/wasm-attention/run.mjs [--repeats N] [--model tiny|default|all]\n' +
      '  --repeats N   timed repeats per product after one warm-up (default 10)\n' +
      '  --model M     tiny: B 8, 4 heads of 64, T 128 (the issue #17 shape);\n' +
      '                default: B 8, 8 heads of 32, T 128 (packages/models/pretrained/default);\n' +
      '                all (default): both\n' +
      'Needs a build first (pnpm build): it imports packages/core/dist.',
  );
  process.exit(0);
}
function option(name, fallback) {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : fallback;
}
const repeats = Number(option('--repeats', '10'));
const MODELS = {
  tiny: { B: 8, H: 4, T: 128, D: 64 },
  default: { B: 8, H: 8, T: 128, D: 32 },
};
const modelArg = option('--model', 'all');
if (!Number.isInteger(repeats) || repeats < 1) {
  console.error(`--repeats must be an integer >= 1, got ${option('--repeats')}`);
  process.exit(2);
}
if (modelArg !== 'all' && !(modelArg in MODELS)) {
  console.error(`--model must be tiny, default or all, got ${modelArg}`);
  process.exit(2);
}
const models = modelArg === 'all' ? Object.keys(MODELS) : [modelArg];

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const { tf } = await import(join(root, 'packages/core/dist/src/index.js'));
await tf.setBackend('wasm');
await tf.ready();
const registered = tf.getKernel('BatchMatMul', 'wasm');
if (!registered?.stock) {
  console.error("BatchMatMul on wasm is not the project's wrapper: rebuild packages/core");
  process.exit(1);
}
const backend = tf.backend();

/**
 * The products of one attention layer, forward and backward, as the models
 * issue them (packages/models/src/gpt2/model.ts): [name, op(A) [m, k] x op(B) [k, n], flags].
 */
function products({ T, D }) {
  return [
    ['S = Q K^T', T, T, D, false, true],
    ['Y = P V', T, D, T, false, false],
    ['dP = dY V^T', T, T, D, false, true],
    ['dV = P^T dY', T, D, T, true, false],
    ['dQ = dS K', T, D, T, false, false],
    ['dK = dS^T Q', T, D, T, true, false],
  ];
}

function median(xs) {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)];
}

/** Milliseconds of one call of f (synchronous on wasm); its output is disposed. */
function timeOnce(f, dispose) {
  const t = performance.now();
  const out = f();
  const ms = performance.now() - t;
  dispose(out);
  return ms;
}

function measure(batch, [, m, n, k, ta, tb]) {
  const a = tf.randomNormal([batch, ...(ta ? [k, m] : [m, k])]);
  const b = tf.randomNormal([batch, ...(tb ? [n, k] : [k, n])]);
  const a2 = tf.randomNormal([batch * m, k]);
  const b2 = tf.randomNormal([k, n]);
  const attrs = { transposeA: ta, transposeB: tb };
  const variants = {
    project: [() => tf.matMul(a, b, ta, tb), (t) => t.dispose()],
    stock: [
      () => registered.stock({ inputs: { a, b }, backend, attrs }),
      (info) => backend.disposeData(info.dataId),
    ],
    flat: [() => tf.matMul(a2, b2), (t) => t.dispose()],
  };
  const times = { project: [], stock: [], flat: [] };
  for (const [f, dispose] of Object.values(variants)) timeOnce(f, dispose);
  for (let r = 0; r < repeats; r++) {
    for (const [name, [f, dispose]] of Object.entries(variants)) {
      times[name].push(timeOnce(f, dispose));
    }
  }
  tf.dispose([a, b, a2, b2]);
  const flops = 2 * batch * m * n * k;
  const rates = (stat) =>
    Object.fromEntries(Object.entries(times).map(([name, ms]) => [name, flops / stat(ms) / 1e6]));
  return { median: rates(median), best: rates((ms) => Math.min(...ms)) };
}

const pad = (x, w) => String(x).padStart(w);
const HEADER =
  'product          [m, k] x [k, n]         project    stock  2-D XNNPACK  project/stock  project/2-D';
function row(label, dims, g) {
  return `${label.padEnd(15)}  ${dims.padEnd(22)}  ${pad(g.project.toFixed(1), 7)}  ${pad(g.stock.toFixed(2), 7)}  ${pad(g.flat.toFixed(1), 11)}  ${pad((g.project / g.stock).toFixed(1) + 'x', 13)}  ${pad((g.project / g.flat).toFixed(2), 11)}`;
}

console.log(`tfjs-wasm ${tf.version.tfjs}, attention products, ${repeats} repeats, GFLOP/s`);
for (const name of models) {
  const shape = MODELS[name];
  const batch = shape.B * shape.H;
  const results = products(shape).map((p) => ({ p, g: measure(batch, p) }));
  for (const stat of ['median', 'best']) {
    console.log(
      `\n${name}: B ${shape.B} x H ${shape.H} = ${batch} matrices, T ${shape.T}, D ${shape.D}; ${stat} of ${repeats}`,
    );
    console.log(HEADER);
    const time = { project: 0, stock: 0, flat: 0 };
    let allFlops = 0;
    for (const { p, g } of results) {
      const [label, m, n, k] = p;
      const flops = 2 * batch * m * n * k;
      allFlops += flops;
      for (const v of Object.keys(time)) time[v] += flops / g[stat][v];
      console.log(row(label, `[${m}, ${k}] x [${k}, ${n}]`, g[stat]));
    }
    const all = Object.fromEntries(Object.entries(time).map(([v, t]) => [v, allFlops / t]));
    console.log(row('all six', '', all));
  }
}
