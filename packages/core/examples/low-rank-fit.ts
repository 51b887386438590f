// The foundation's main job: a small, real LoRA fit done by @lorafleet/core
// alone (no language model yet; the models issue replaces this job).
//
// A frozen "pretrained" two-layer network f(x) = W2 gelu(W1 x) is adapted to
// a new task whose teacher is the same network with a rank-4 change to W1 and
// W2. LoRA (r=8) on both layers learns the change from samples; the run prints
// held-out loss before and after, checks that merged and unmerged outputs
// agree, compares the learned update's subspace with the true change (LoRA
// paper, section 7), and saves the adapter in PEFT's layout.
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import {
  type BackendName,
  BACKENDS,
  LoraLinear,
  TrainableParameters,
  Rng,
  adamWStep,
  clipGlobalNorm,
  createAdamWState,
  lrFactor,
  matrix,
  exportAdapter,
  savePeftAdapter,
  subspaceSimilarity,
  svd,
  tf,
  updateSvd,
  useBackend,
} from '../src/index.js';

const HELP = `usage: pnpm main [-- options]   (or node packages/core/dist/examples/low-rank-fit.js)

A small real LoRA fit with @lorafleet/core: adapt a frozen two-layer network to
a task that differs by a rank-4 change, then save the adapter (PEFT layout).

options:
  --steps N        optimizer steps (default 300)
  --lr X           peak learning rate (default 0.01, linear warmup then cosine)
  --rank R         LoRA rank r (default 8; alpha = 2r)
  --backend NAME   ${BACKENDS.join(' | ')} (default wasm)
  --seed S         seed of data and initialisation (default 0)
  --out DIR        where the adapter and metrics.jsonl go (default runs/low-rank-fit)
  -h, --help       this text`;

const DIM = 64; // input and output features
const HIDDEN = 128;
const TRUE_RANK = 4;
const TRAIN = 4096;
const HELD_OUT = 1024;
const BATCH = 64;

/** GELU, tanh approximation (GPT-2's gelu_new); tfjs has no gelu op. */
function gelu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
    return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
  });
}

function gaussian(rng: Rng, rows: number, cols: number, std: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) out[i] = rng.normal() * std;
  return out;
}

/** W + U V^T with U [rows, k], V [cols, k]: the teacher's low-rank change. */
function lowRankChange(
  w: Float32Array,
  rows: number,
  cols: number,
  rng: Rng,
): { w: Float32Array; delta: Float32Array } {
  // Sized so that ||delta|| is about half of ||W||: a real change, not a rewrite.
  const u = gaussian(rng, rows, TRUE_RANK, 0.25);
  const v = gaussian(rng, cols, TRUE_RANK, 1 / Math.sqrt(cols));
  const delta = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let sum = 0;
      for (let k = 0; k < TRUE_RANK; k++) sum += u[i * TRUE_RANK + k]! * v[j * TRUE_RANK + k]!;
      delta[i * cols + j] = sum;
    }
  }
  return { w: w.map((x, i) => x + delta[i]!), delta };
}

export interface LowRankFitOptions {
  steps: number;
  rank: number;
  seed: number;
  lr: number;
  backend: BackendName;
  /** Folder for adapter/ and metrics.jsonl. */
  out: string;
}

export interface LowRankFitResult {
  heldOutBefore: number;
  heldOutAfter: number;
  mergeGap: number;
  trainable: number;
  frozen: number;
  modules: { name: string; learned: number[]; truth: number[]; similarity: number }[];
  adapterDir: string;
}

function parse(): LowRankFitOptions {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string', default: '300' },
      lr: { type: 'string', default: '0.01' },
      rank: { type: 'string', default: '8' },
      backend: { type: 'string', default: 'wasm' },
      seed: { type: 'string', default: '0' },
      out: { type: 'string', default: 'runs/low-rank-fit' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    process.exit(0);
  }
  const int = (name: 'steps' | 'rank' | 'seed', min: number) => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < min)
      throw new Error(`--${name} must be an integer >= ${min}, got "${values[name]}"`);
    return n;
  };
  const lr = Number(values.lr);
  if (!(lr > 0)) throw new Error(`--lr must be a positive number, got "${values.lr}"`);
  if (!BACKENDS.includes(values.backend as BackendName)) {
    throw new Error(`--backend must be one of ${BACKENDS.join(', ')}, got "${values.backend}"`);
  }
  return {
    steps: int('steps', 1),
    rank: int('rank', 1),
    seed: int('seed', 0),
    lr,
    backend: values.backend as BackendName,
    out: resolve(values.out),
  };
}

export async function lowRankFit(
  opts: LowRankFitOptions,
  log: (line: string) => void = console.log,
): Promise<LowRankFitResult> {
  await useBackend(opts.backend);
  const rng = new Rng(opts.seed + 1);

  // The frozen base and the task's teacher.
  const w1 = gaussian(rng, HIDDEN, DIM, 1 / Math.sqrt(DIM));
  const w2 = gaussian(rng, DIM, HIDDEN, 1 / Math.sqrt(HIDDEN));
  const teacher1 = lowRankChange(w1, HIDDEN, DIM, rng);
  const teacher2 = lowRankChange(w2, DIM, HIDDEN, rng);
  const layers = [
    new LoraLinear({ name: 'mlp.fc_in', weight: tf.tensor2d(w1, [HIDDEN, DIM]) }),
    new LoraLinear({ name: 'mlp.fc_out', weight: tf.tensor2d(w2, [DIM, HIDDEN]) }),
  ];
  const settings = { r: opts.rank, alpha: 2 * opts.rank, dropout: 0, rslora: false };
  for (const layer of layers) layer.addAdapter('default', settings, { kind: 'kaiming' }, opts.seed);
  const [fcIn, fcOut] = layers as [LoraLinear, LoraLinear];
  const forward = (x: tf.Tensor) => fcOut.forward(gelu(fcIn.forward(x)));

  // Data: x ~ N(0, I), y = teacher(x).
  const [xTrain, yTrain, xHeld, yHeld] = tf.tidy(() => {
    const t1 = tf.tensor2d(teacher1.w, [HIDDEN, DIM]);
    const t2 = tf.tensor2d(teacher2.w, [DIM, HIDDEN]);
    const teacher = (x: tf.Tensor2D) =>
      tf.matMul(gelu(tf.matMul(x, t1, false, true)), t2, false, true);
    const xt = tf.tensor2d(gaussian(rng, TRAIN, DIM, 1), [TRAIN, DIM]);
    const xh = tf.tensor2d(gaussian(rng, HELD_OUT, DIM, 1), [HELD_OUT, DIM]);
    return [xt, teacher(xt), xh, teacher(xh)];
  });
  const mse = (x: tf.Tensor, y: tf.Tensor) =>
    tf.mean(tf.square(tf.sub(forward(x), y))) as tf.Scalar;
  const heldOutLoss = () => tf.tidy(() => mse(xHeld, yHeld).dataSync()[0]!);

  const params = TrainableParameters.fromLoraLayers(layers);
  const total = layers.reduce((n, l) => n + l.inFeatures * l.outFeatures, 0);
  log(
    `low-rank fit on ${opts.backend}: ${params.size} trainable LoRA parameters ` +
      `(${((100 * params.size) / total).toFixed(1)}% of the ${total} frozen weights), r=${settings.r}, alpha=${settings.alpha}`,
  );
  const before = heldOutLoss();
  log(`held-out MSE before: ${before.toExponential(3)}`);

  await mkdir(opts.out, { recursive: true });
  const metricsPath = join(opts.out, 'metrics.jsonl');
  await writeFile(metricsPath, '');
  const values = params.read();
  const state = createAdamWState(params.size);
  const optimizer = { lr: opts.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };
  const schedule = {
    kind: 'cosine',
    warmupSteps: Math.min(20, opts.steps - 1),
    totalSteps: opts.steps,
  } as const;
  const order = new Rng(opts.seed + 2);
  const started = performance.now();
  for (let step = 0; step < opts.steps; step++) {
    const offset = Math.floor(order.uniform() * (TRAIN / BATCH)) * BATCH;
    const { loss, grads } = params.lossAndGrads(() =>
      tf.tidy(() => mse(xTrain.slice(offset, BATCH), yTrain.slice(offset, BATCH))),
    );
    const norm = clipGlobalNorm(grads, 1.0);
    const lr = opts.lr * lrFactor(schedule, step);
    adamWStep(values, grads, state, optimizer, lr);
    params.write(values);
    const seconds = (performance.now() - started) / 1000;
    await appendFile(
      metricsPath,
      JSON.stringify({ step: step + 1, loss, lr, gradNorm: norm, seconds }) + '\n',
    );
    if ((step + 1) % 50 === 0 || step + 1 === opts.steps) {
      const rate = ((step + 1) * BATCH) / seconds;
      log(
        `step ${String(step + 1).padStart(4)}/${opts.steps}  loss ${loss.toExponential(3)}  lr ${lr.toExponential(2)}  ${rate.toFixed(0)} samples/s`,
      );
    }
  }
  const after = heldOutLoss();
  log(
    `held-out MSE after:  ${after.toExponential(3)}  (${(before / after).toPrecision(3)}x lower)`,
  );

  // Merged and unmerged give the same outputs: merging costs nothing at inference.
  const gap = tf.tidy(() => {
    const unmerged = forward(xHeld);
    layers.forEach((l) => l.merge());
    const merged = forward(xHeld);
    layers.forEach((l) => l.unmerge());
    return tf.max(tf.abs(tf.sub(merged, unmerged))).dataSync()[0]!;
  });
  log(`merged vs unmerged outputs: max |difference| ${gap.toExponential(2)}`);

  // How much of the true change's subspace did each learned update find?
  const modules: LowRankFitResult['modules'] = [];
  for (const [layer, truth] of [
    [fcIn, teacher1.delta],
    [fcOut, teacher2.delta],
  ] as const) {
    const adapter = layer.activeAdapter!;
    const shape = { r: settings.r, inFeatures: layer.inFeatures, outFeatures: layer.outFeatures };
    const learned = updateSvd(
      adapter.a.dataSync() as Float32Array,
      adapter.b.dataSync() as Float32Array,
      shape,
      adapter.scaling,
    );
    const trueSvd = svd(matrix(layer.outFeatures, layer.inFeatures, truth));
    const phi = subspaceSimilarity(learned.u, trueSvd.u, TRUE_RANK, TRUE_RANK);
    const top = [...learned.s.slice(0, TRUE_RANK + 2)].map((s) => s.toFixed(2)).join(' ');
    const want = [...trueSvd.s.slice(0, TRUE_RANK)].map((s) => s.toFixed(2)).join(' ');
    modules.push({
      name: layer.name,
      learned: [...learned.s],
      truth: [...trueSvd.s.slice(0, TRUE_RANK)],
      similarity: phi,
    });
    log(
      `${layer.name}: learned update's singular values ${top} (true change: ${want}); subspace similarity phi(${TRUE_RANK}, ${TRUE_RANK}) = ${phi.toFixed(3)}`,
    );
  }

  const adapterDir = join(opts.out, 'adapter');
  await savePeftAdapter(
    adapterDir,
    exportAdapter(layers, 'default', {
      targetModules: ['fc_in', 'fc_out'],
      bias: 'none',
      initLoraWeights: true,
      baseModelNameOrPath: null,
      taskType: null,
    }),
  );
  log(`adapter saved (PEFT layout): ${adapterDir}\nper-step metrics: ${metricsPath}`);
  tf.dispose([xTrain, yTrain, xHeld, yHeld]);
  layers.forEach((l) => l.dispose());
  return {
    heldOutBefore: before,
    heldOutAfter: after,
    mergeGap: gap,
    trainable: params.size,
    frozen: total,
    modules,
    adapterDir,
  };
}

// Run as a program (not when a test imports it).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  Promise.resolve()
    .then(() => lowRankFit(parse()))
    .catch((err: unknown) => {
      console.error(
        `low-rank-fit: ${err instanceof Error ? err.message : String(err)} (see --help)`,
      );
      process.exit(1);
    });
}
