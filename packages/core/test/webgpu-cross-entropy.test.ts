// The fused softmax cross-entropy (src/backend/webgpu-kernels/cross-entropy.ts)
// executed on webgpu (SwiftShader where there is no GPU), against tfjs's path
// (logSoftmax + gather, as models/src/loss.ts computes it) on webgpu and on
// the cpu backend: the loss and d loss / d logits, with ignored labels (-100),
// one row, vocabularies below and above the workgroup size, odd sizes.
import { describe, expect, it } from 'vitest';
import {
  type BackendName,
  LORAFLEET_XENT,
  Rng,
  crossEntropyRows,
  fusedCrossEntropyAvailable,
  tf,
  tokenStats,
  useBackend,
  useFusedCrossEntropy,
} from '../src/index.js';
import { TOKEN_STATS } from '../src/backend/token-stats.js';
import { webGpuSuite } from './webgpu-suite.js';

const IGNORE = -100;

function logitsOf(n: number, v: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n * v }, () => rng.normal() * 3);
}

/** tfjs's path: -sum over labelled rows of logSoftmax(logits)[row, label]. */
function reference(logits: tf.Tensor2D, labels: Int32Array): tf.Scalar {
  const [n, v] = logits.shape;
  const index = Int32Array.from(labels, (l, row) => row * v + Math.max(l, 0));
  const weight = Float32Array.from(labels, (l) => (l < 0 ? 0 : 1));
  const logp = tf.logSoftmax(logits).reshape([n * v]);
  const picked = tf.gather(logp, tf.tensor1d(index, 'int32'));
  return tf.neg(tf.sum(tf.mul(picked, tf.tensor1d(weight)))) as tf.Scalar;
}

interface Outcome {
  loss: number;
  grad: Float32Array;
  kernels: string[];
}

async function run(backend: BackendName, fused: boolean, n: number, v: number, labels: Int32Array) {
  await useBackend(backend);
  if (backend === 'webgpu') tf.env().set('WEBGPU_CPU_FORWARD', false);
  useFusedCrossEntropy(fused);
  try {
    if (backend === 'webgpu') expect(fusedCrossEntropyAvailable()).toBe(fused);
    const logits = tf.tensor2d(logitsOf(n, v, n * 31 + v), [n, v]);
    let loss!: tf.Tensor;
    let grad!: tf.Tensor;
    const profile = await tf.profile(() => {
      const f = (x: tf.Tensor) =>
        fused
          ? tf.sum(crossEntropyRows(x as tf.Tensor2D, labels))
          : reference(x as tf.Tensor2D, labels);
      const result = tf.valueAndGrad(f)(logits);
      loss = result.value;
      grad = result.grad;
      return [];
    });
    const out: Outcome = {
      loss: (await loss.data())[0]!,
      grad: (await grad.data()) as Float32Array,
      kernels: profile.kernelNames,
    };
    tf.dispose([logits, loss, grad]);
    return out;
  } finally {
    useFusedCrossEntropy(true);
  }
}

function maxDiff(x: Float32Array, y: Float32Array): number {
  expect(x.length).toBe(y.length);
  let worst = 0;
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  return worst;
}

const CASES: [string, number, number, number[]][] = [
  ['one row, vocabulary 97 (< workgroup)', 1, 97, [5]],
  [
    '13 rows, vocabulary 1001, ignored rows',
    13,
    1001,
    [0, IGNORE, 1000, 7, IGNORE, 3, 999, 500, 1, IGNORE, 2, 64, 65],
  ],
  ['all rows ignored but one, vocabulary 256', 4, 256, [IGNORE, IGNORE, 255, IGNORE]],
];

webGpuSuite();

describe('fused softmax cross-entropy on webgpu equals tfjs (webgpu, cpu)', () => {
  for (const [what, n, v, labelList] of CASES) {
    it(
      what,
      async () => {
        const labels = Int32Array.from(labelList);
        const fused = await run('webgpu', true, n, v, labels);
        const stock = await run('webgpu', false, n, v, labels);
        const cpu = await run('cpu', false, n, v, labels);
        expect(fused.kernels).toContain(LORAFLEET_XENT);
        expect(fused.kernels).not.toContain('LogSoftmax');
        for (const peer of [stock, cpu]) {
          expect(Math.abs(fused.loss - peer.loss)).toBeLessThan(
            1e-3 * Math.max(1, Math.abs(peer.loss)),
          );
          expect(maxDiff(fused.grad, peer.grad)).toBeLessThan(1e-5);
        }
        expect(fused.loss).toBeGreaterThan(0.1); // not vacuous
        // Ignored rows get no gradient; labelled rows' gradients sum to 0 over the vocabulary.
        for (let row = 0; row < n; row++) {
          const g = fused.grad.subarray(row * v, (row + 1) * v);
          const sum = g.reduce((a, b) => a + b, 0);
          if (labels[row]! < 0) expect(Math.max(...g.map(Math.abs))).toBe(0);
          else expect(Math.abs(sum)).toBeLessThan(1e-5);
        }
      },
      300_000,
    );
  }

  // The hand-scheduled step pads the logits' rows to a multiple of 4 (attr vocab): the padding,
  // here NaN, must not reach the statistics.
  it('LoraFleetXent with vocab: the first vocab columns of padded rows, as unpadded', async () => {
    await useBackend('webgpu');
    const [n, v, width] = [5, 97, 100];
    const values = logitsOf(n, v, 9);
    const padded = new Float32Array(n * width).fill(Number.NaN);
    for (let r = 0; r < n; r++) padded.set(values.subarray(r * v, (r + 1) * v), r * width);
    const labels = tf.tensor1d([3, IGNORE, 96, 0, 50], 'int32');
    const [plain, wide] = [tf.tensor2d(values, [n, v]), tf.tensor2d(padded, [n, width])];
    const want = tf.engine().runKernel(LORAFLEET_XENT, { logits: plain, labels }) as tf.Tensor;
    const got = tf
      .engine()
      .runKernel(LORAFLEET_XENT, { logits: wide, labels }, { vocab: v } as never) as tf.Tensor;
    const [w, g] = [(await want.data()) as Float32Array, (await got.data()) as Float32Array];
    expect(Array.from(g)).toEqual(Array.from(w));
    expect(w.every(Number.isFinite)).toBe(true);
    expect(() =>
      tf.engine().runKernel(LORAFLEET_XENT, { logits: wide, labels }, { vocab: 101 } as never),
    ).toThrow(/vocab 101 must be 1..100/);
    tf.dispose([labels, plain, wide, want, got]);
  });

  it('rejects labels of the wrong length, saying so', () => {
    const logits = tf.zeros([3, 4]) as tf.Tensor2D;
    expect(() => crossEntropyRows(logits, new Int32Array(2))).toThrow(/2 labels for 3 rows/);
    logits.dispose();
  });
});

// TRL's token metrics (ops/token-stats.ts) on webgpu's LoraFleetTokenStats: the same hits as
// the cpu kernel (ties at the maximum included: the first column wins), the entropy within
// 1e-5, and over padded rows (attr vocab, the hand-scheduled step's) the unpadded values.
describe('LoraFleetTokenStats on webgpu equals the cpu kernel', () => {
  const problem = (n: number, v: number, seed: number) => {
    const values = logitsOf(n, v, seed);
    const labels = Int32Array.from({ length: n }, (_, r) => (r % 4 === 3 ? IGNORE : (r * 37) % v));
    for (let r = 0; r < n; r += 2) {
      // The label's logit the row's maximum; every fourth row repeats it before the label.
      const row = values.subarray(r * v, (r + 1) * v);
      const label = Math.max(1, labels[r]! < 0 ? 1 : labels[r]!);
      labels[r] = label;
      row[label] = Math.max(...row) + 1;
      if (r % 4 === 0) row[label - 1] = row[label]!;
    }
    return { values, labels };
  };
  const statsOn = async (
    backend: BackendName,
    values: Float32Array,
    labels: Int32Array,
    v: number,
  ) => {
    await useBackend(backend);
    const out = tf.tidy(() =>
      tokenStats(tf.tensor2d(values, [labels.length, v]), tf.tensor1d(labels, 'int32')),
    );
    const data = (await out.data()) as Float32Array;
    out.dispose();
    return data;
  };

  it.each([
    [1, 97],
    [13, 1001],
    [6, 256],
  ])(
    '%i rows, vocabulary %i',
    async (n, v) => {
      const { values, labels } = problem(n, v, n + v);
      const gpu = await statsOn('webgpu', values, labels, v);
      const cpu = await statsOn('cpu', values, labels, v);
      await useBackend('webgpu');
      let hits = 0;
      for (let r = 0; r < n; r++) {
        expect(gpu[2 * r], `row ${r} hit`).toBe(cpu[2 * r]);
        expect(Math.abs(gpu[2 * r + 1]! - cpu[2 * r + 1]!), `row ${r} entropy`).toBeLessThan(
          1e-5 * Math.max(1, cpu[2 * r + 1]!),
        );
        hits += cpu[2 * r]!;
      }
      if (n > 1) expect(hits).toBeGreaterThan(0);
      expect(cpu.some((x, i) => i % 2 === 1 && x > 0.1)).toBe(true);
    },
    300_000,
  );

  it('over padded rows (attr vocab) as over unpadded ones', async () => {
    await useBackend('webgpu');
    const [n, v, width] = [5, 97, 100];
    const { values, labels: list } = problem(n, v, 4);
    const padded = new Float32Array(n * width).fill(Number.NaN);
    for (let r = 0; r < n; r++) padded.set(values.subarray(r * v, (r + 1) * v), r * width);
    const labels = tf.tensor1d(list, 'int32');
    const [plain, wide] = [tf.tensor2d(values, [n, v]), tf.tensor2d(padded, [n, width])];
    const want = tf.engine().runKernel(TOKEN_STATS, { logits: plain, labels }) as tf.Tensor;
    const got = tf
      .engine()
      .runKernel(TOKEN_STATS, { logits: wide, labels }, { vocab: v } as never) as tf.Tensor;
    const [w, g] = [(await want.data()) as Float32Array, (await got.data()) as Float32Array];
    expect(Array.from(g)).toEqual(Array.from(w));
    expect(w.every(Number.isFinite)).toBe(true);
    tf.dispose([labels, plain, wide, want, got]);
  });
});
