// tokenStats (TRL's mean_token_accuracy and entropy per row) on every host
// kernel: the cpu backend's TypeScript loop, wasm's SIMD code, the same loop
// on wasm's heap, and the tfjs-op composition other backends take, against
// a float64 statement of TRL's math (argmax, -sum p log p) on odd
// vocabularies, ignored rows, logits of +-80, a batch of one, and rows whose
// maximum is repeated before, at and after the label (torch's argmax takes
// the first). Entropy within 1e-5 (relative to 1 + |want|); hits exact.
import { afterAll, describe, expect, it } from 'vitest';
import { TOKEN_STATS, TOKEN_STATS_KERNELS } from '../src/backend/token-stats.js';
import { tf } from '../src/backend/tf.js';
import { softmaxCrossEntropy } from '../src/ops/softmax-cross-entropy.js';
import { tokenStats, tokenStatsComposed } from '../src/ops/token-stats.js';
import { Rng } from '../src/random.js';

/** Logits [N, V] (normal * 3, some at +-80), every 4th label ignored, and rows with repeated maxima. */
function problem(N: number, V: number, seed: number) {
  const rng = new Rng(seed);
  const logits = Float32Array.from({ length: N * V }, () =>
    rng.uniform() < 0.01 ? (rng.uniform() < 0.5 ? -80 : 80) : rng.normal() * 3,
  );
  const labels = Int32Array.from({ length: N }, (_, n) =>
    n % 4 === 3 ? -100 : Math.floor(rng.uniform() * V),
  );
  for (let n = 0; n < N && V > 2; n += 3) {
    // A maximum repeated: at the label and before it, at the label and after it, or the label alone.
    const row = logits.subarray(n * V, (n + 1) * V);
    const top = Math.max(...row) + 1;
    const label = Math.max(1, Math.min(V - 2, labels[n]! < 0 ? 1 : labels[n]!));
    labels[n] = label;
    row[label] = top;
    if (n % 9 === 0) row[label - 1] = top;
    if (n % 9 === 3) row[label + 1] = top;
  }
  return { N, V, logits, labels };
}

/** TRL's math in float64: [hit, entropy] per row, 0s where ignored. */
function reference({ N, V, logits, labels }: ReturnType<typeof problem>): number[] {
  const out: number[] = [];
  for (let n = 0; n < N; n++) {
    const row = Array.from(logits.subarray(n * V, (n + 1) * V));
    if (labels[n]! < 0) {
      out.push(0, 0);
      continue;
    }
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
    const entropy = -row.reduce((s, x) => s + Math.exp(x - lse) * (x - lse), 0);
    out.push(row.indexOf(max) === labels[n] ? 1 : 0, entropy);
  }
  return out;
}

const SHAPES: [number, number][] = [
  [1, 1],
  [1, 3],
  [5, 7],
  [13, 64],
  [9, 1001],
  [40, 257],
];

type Run = (p: ReturnType<typeof problem>) => Float32Array;
const viaOp: Run = (p) =>
  tf.tidy(() =>
    tokenStats(tf.tensor2d(p.logits, [p.N, p.V]), tf.tensor1d(p.labels, 'int32')).dataSync(),
  ) as Float32Array;
const viaComposed: Run = (p) =>
  tf.tidy(() =>
    tokenStatsComposed(
      tf.tensor2d(p.logits, [p.N, p.V]),
      tf.tensor1d(p.labels, 'int32'),
    ).dataSync(),
  ) as Float32Array;
/** The TypeScript loop on the active backend (on wasm: over its heap, no SIMD). */
const viaHost: Run = (p) =>
  tf.tidy(() => {
    const logits = tf.tensor2d(p.logits, [p.N, p.V]);
    const labels = tf.tensor1d(p.labels, 'int32');
    const kernel = TOKEN_STATS_KERNELS.find((k) => k.backendName === tf.getBackend())!;
    const info = kernel.host({
      inputs: { logits, labels },
      backend: tf.backend(),
      attrs: {},
    }) as tf.TensorInfo;
    return tf.engine().makeTensorFromTensorInfo(info).dataSync();
  }) as Float32Array;

const PATHS: [string, 'cpu' | 'wasm', Run][] = [
  ['cpu kernel', 'cpu', viaOp],
  ['wasm SIMD kernel', 'wasm', viaOp],
  ['wasm TypeScript kernel', 'wasm', viaHost],
  ['tfjs ops (other backends)', 'cpu', viaComposed],
];

describe('tokenStats: argmax hits and entropy per row', () => {
  afterAll(() => tf.setBackend('cpu'));

  it.each(PATHS)('%s equals TRL math in float64', async (_, backend, run) => {
    await tf.setBackend(backend);
    if (run === viaOp) expect(tf.getKernel(TOKEN_STATS, backend)).toBeDefined();
    let ties = 0;
    for (const [i, [N, V]] of SHAPES.entries()) {
      const p = problem(N, V, 7 + i);
      const got = run(p);
      const want = reference(p);
      expect(got.length).toBe(2 * N);
      for (let n = 0; n < N; n++) {
        expect(got[2 * n], `[${N}, ${V}] row ${n} hit`).toBe(want[2 * n]);
        const e = Math.abs(got[2 * n + 1]! - want[2 * n + 1]!) / (1 + Math.abs(want[2 * n + 1]!));
        expect(e, `[${N}, ${V}] row ${n} entropy`).toBeLessThan(1e-5);
        if (n % 9 === 0 && V > 2 && p.labels[n]! >= 0) ties += want[2 * n] === 0 ? 1 : 0;
      }
    }
    expect(ties).toBeGreaterThan(0); // a maximum repeated before the label is a miss
  });

  it('has a zero gradient: the loss beside it differentiates as alone', async () => {
    await tf.setBackend('wasm');
    const p = problem(6, 33, 3);
    const labels = tf.tensor1d(p.labels, 'int32');
    const x = tf.tensor2d(p.logits, [p.N, p.V]);
    const alone = tf.grad((l: tf.Tensor) => tf.sum(softmaxCrossEntropy(l as tf.Tensor2D, labels)));
    const beside = tf.grad((l: tf.Tensor) =>
      tf.add(
        tf.sum(softmaxCrossEntropy(l as tf.Tensor2D, labels)),
        tf.sum(tokenStats(l as tf.Tensor2D, labels)),
      ),
    );
    expect(Array.from(beside(x).dataSync())).toEqual(Array.from(alone(x).dataSync()));
    tf.dispose([labels, x]);
  });

  it('refuses a label outside the vocabulary, naming the row', async () => {
    await tf.setBackend('cpu');
    const x = tf.zeros([2, 4]) as tf.Tensor2D;
    const labels = tf.tensor1d([1, 4], 'int32');
    expect(() => tokenStats(x, labels)).toThrow(/label 4 of row 1 is outside 0\.\.3/);
    tf.dispose([x, labels]);
  });
});
