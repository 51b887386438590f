// The preference tests' fixture (dpo.test.ts, reference-free.test.ts): a tiny
// GPT-2 with LoRA, pair batches with random response lengths, and each
// sequence's log-probabilities computed in float64 from the logits.
import { DEFAULT_LORA, TrainableParameters, tf } from '@lorafleet/core';
import { expect } from 'vitest';
import {
  type CausalLM,
  type ForwardPassOptions,
  IGNORE_INDEX,
  type ObjectiveSettings,
  type TokenBatch,
  addLora,
  buildModel,
  modelConfigFromJson,
  objectiveOf,
  randomModelWeights,
} from '../src/index.js';

export const V = 40;
export const T = 10;
export const GPT2 = {
  model_type: 'gpt2',
  vocab_size: V,
  n_positions: 16,
  n_embd: 16,
  n_layer: 2,
  n_head: 2,
};
export const BETA = 0.5;

export function build(): CausalLM {
  const config = modelConfigFromJson(GPT2, 'gpt2');
  return buildModel(config, randomModelWeights(config, 7));
}

/** LoRA on every linear layer; B random (scale 0: B = 0, the reference itself); `dropout` LoRA's. */
export async function withLora(
  model: CausalLM,
  scale: number,
  dropout = DEFAULT_LORA.dropout,
): Promise<TrainableParameters> {
  const layers = await addLora(
    model.linears(),
    'default',
    { ...DEFAULT_LORA, r: 4, dropout },
    { kind: 'kaiming' },
    'all-linear',
    3,
  );
  for (const l of layers) {
    const b = l.activeAdapter!.b;
    b.assign(tf.randomNormal(b.shape, 0, scale, 'float32', 5));
  }
  return TrainableParameters.fromLoraLayers(layers);
}

/** Pairs [chosen | rejected] sharing a prompt of `p` tokens (no loss), responses of random length. */
export function pairBatch(B: number, seed: number, vocab = V): TokenBatch {
  let s = seed;
  const rand = () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const ids = new Int32Array(B * 2 * T);
  const labels = new Int32Array(B * 2 * T).fill(IGNORE_INDEX);
  for (let b = 0; b < B; b++) {
    const prompt = Array.from({ length: 3 }, () => Math.floor(rand() * vocab));
    for (let side = 0; side < 2; side++) {
      const row = (2 * b + side) * T;
      const length = 5 + Math.floor(rand() * (T - 4)); // 5..T real tokens, the rest padding
      for (let t = 0; t < T; t++) {
        ids[row + t] = t < 3 ? prompt[t]! : t < length ? Math.floor(rand() * vocab) : 0;
        if (t >= 3 && t < length) labels[row + t] = ids[row + t]!;
      }
    }
  }
  return { ids, labels, batchSize: B, seqLen: 2 * T };
}

/**
 * `batch` with every other token of the first `pairs` chosen responses
 * replaced by the model's greedy prediction there (its logits' argmax,
 * adapters as they are): a random model predicts almost no label, and a
 * test of the token accuracy needs hits.
 */
export function withPredictedTokens(
  model: CausalLM,
  batch: TokenBatch,
  pairs = batch.batchSize,
): TokenBatch {
  const [ids, labels] = [Int32Array.from(batch.ids), Int32Array.from(batch.labels)];
  const [T, vocab] = [batch.seqLen / 2, model.modelConfig.vocabSize];
  for (let b = 0; b < pairs; b++) {
    const row = 2 * b * T; // the chosen sequence
    for (let t = 1; t < T; t += 2) {
      if (labels[row + t] === IGNORE_INDEX) continue;
      const predicted = tf.tidy(() => {
        const logits = model.forward(tf.tensor2d(ids.subarray(row, row + T), [1, T], 'int32'));
        return tf
          .argMax(logits.slice([0, t - 1, 0], [1, 1, vocab]).reshape([vocab]))
          .dataSync()[0]!;
      });
      ids[row + t] = labels[row + t] = predicted;
    }
  }
  return { ...batch, ids, labels };
}

/** Per sequence's labelled positions: what logpsFloat64 sums. */
export interface SequenceFloat64 {
  /** The summed log softmax of the labels, and how many there are. */
  sum: number;
  tokens: number;
  /** TRL's token metrics, summed: argmax hits (the first largest), entropies, means of the logits. */
  correct: number;
  entropy: number;
  logitSum: number;
}

/** Sums over labelled positions of log softmax and TRL's token metrics, per sequence, in float64 from logits [S*T, V]. */
export function logpsFloat64(logits: Float32Array, seqs: TokenBatch, vocab = V): SequenceFloat64[] {
  const out: SequenceFloat64[] = [];
  for (let s = 0; s < seqs.batchSize; s++) {
    const sums = { sum: 0, tokens: 0, correct: 0, entropy: 0, logitSum: 0 };
    for (let t = 0; t + 1 < seqs.seqLen; t++) {
      const label = seqs.labels[s * seqs.seqLen + t + 1]!;
      if (label === IGNORE_INDEX) continue;
      const at = s * seqs.seqLen + t;
      const row = Array.from(logits.subarray(at * vocab, (at + 1) * vocab));
      const max = Math.max(...row);
      const z = row.reduce((a, x) => a + Math.exp(x - max), 0);
      const lse = max + Math.log(z);
      sums.sum += row[label]! - lse;
      sums.tokens++;
      sums.correct += row.indexOf(max) === label ? 1 : 0;
      sums.entropy += lse - row.reduce((a, x) => a + (Math.exp(x - max) / z) * x, 0);
      sums.logitSum += row.reduce((a, x) => a + x, 0) / vocab;
    }
    out.push(sums);
  }
  return out;
}

export async function logitsOf(model: CausalLM, seqs: TokenBatch): Promise<Float32Array> {
  const ids = tf.tensor2d(seqs.ids, [seqs.batchSize, seqs.seqLen], 'int32');
  const logits = model.forward(ids);
  const values = (await logits.data()) as Float32Array;
  tf.dispose([ids, logits]);
  return values;
}

/**
 * The gradient `grads` at `theta` against central finite differences of
 * `lossAt`, along the largest coordinate and along a random mix.
 */
export function expectFiniteDifferences(
  theta: Float32Array,
  grads: ArrayLike<number>,
  lossAt: (values: Float32Array) => number,
  label: string | undefined,
  seed = 11,
  /** The step's length (1e-2; less where the loss curves sharply). */
  step = 1e-2,
): void {
  const g = Array.from(grads);
  expect(
    g.some((x) => x !== 0),
    label,
  ).toBe(true);
  let s = seed;
  const rand = () => (s = (s * 69069 + 1) % 2 ** 32) / 2 ** 32 - 0.5;
  const mix = Float32Array.from(theta, () => rand());
  const largest = g.reduce((best, x, i) => (Math.abs(x) > Math.abs(g[best]!) ? i : best), 0);
  const unit = new Float32Array(theta.length);
  unit[largest] = 1;
  for (const d of [unit, mix]) {
    const eps = step / Math.sqrt(d.reduce((a, x) => a + x * x, 0));
    const plus = lossAt(theta.map((x, i) => x + eps * d[i]!));
    const minus = lossAt(theta.map((x, i) => x - eps * d[i]!));
    const numeric = (plus - minus) / (2 * eps);
    const analytic = g.reduce((a, x, i) => a + x * d[i]!, 0);
    expect(Math.abs(numeric - analytic), label).toBeLessThan(2e-2 * Math.abs(analytic) + 1e-4);
  }
}

/** A batch's loss summed as the step computes it (objective.ts: DPO's reference pass first). */
export function objectiveLossSum(
  model: CausalLM,
  batch: TokenBatch,
  settings: ObjectiveSettings,
  options: ForwardPassOptions = {},
): tf.Scalar {
  const prepared = objectiveOf(settings).loss(model, batch, options);
  try {
    return prepared.sum();
  } finally {
    prepared.dispose();
  }
}
