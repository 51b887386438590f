// KTO (Ethayarajh et al. 2024, arXiv 2402.01306) as TRL's KTOTrainer
// computes it, on unpaired feedback: each example is a prompt and one
// completion labelled desirable or not (data's unpaired.ts), in a row of 2T,
// [prompt + completion | prompt + another example's completion]. With
//   r  = logp(completion) - ref(completion)        (summed over its labelled tokens)
//   KL = max(0, mean over the batch of logp(KL seq) - ref(KL seq))   (no gradient)
// an example's loss is
//   desirable:   w_d (1 - sigmoid(beta (r - KL)))
//   undesirable: w_u (1 - sigmoid(beta (KL - r)))
// (TRL's loss_type "kto"; "apo_zero_unpaired" drops the KL). The loss is
// summed over examples and divided by the global count, as pairs are. The KL
// is the mean over the step's whole global batch: each micro-batch's sums
// (ktoKlSums) are added over micro-batches and workers before any gradient
// (Objective.shared), so N workers equal one. TRL takes it per micro-batch,
// averaged over processes: the same where there is one micro-batch.
import { tf } from '@lorafleet/core';
import type { CausalLM, ForwardPassOptions } from './causal-lm.js';
import { labelledTokenCounts, sequenceLogps, weightedLogps, withReference } from './pair-logps.js';
import { IGNORE_INDEX, type TokenBatch } from './labels.js';

/** TRL's KTOConfig.loss_type values. */
export type KtoLossType = 'kto' | 'apo_zero_unpaired';
export const KTO_LOSS_TYPES: readonly KtoLossType[] = ['kto', 'apo_zero_unpaired'];

export interface KtoSettings {
  /** TRL's beta (default 0.1). */
  beta: number;
  /** TRL's loss_type (absent: kto). */
  loss?: KtoLossType;
  /** TRL's desirable_weight and undesirable_weight (absent: 1). */
  desirableWeight?: number;
  undesirableWeight?: number;
}

export type KtoObjective = { kind: 'kto' } & KtoSettings;

/** TRL's KTOConfig.beta default. */
export const DEFAULT_KTO_BETA = 0.1;

/** Whether the loss reads the KL estimate (TRL's calculate_KL: loss_type kto). */
export const ktoReadsKl = (s: KtoSettings): boolean => (s.loss ?? 'kto') === 'kto';

/** One half of each row of a KTO batch [B, 2T]: 0 the completions, 1 the KL sequences; B rows of T. */
export function ktoHalf(batch: TokenBatch, half: 0 | 1): TokenBatch {
  const { batchSize: B, seqLen } = batch;
  if (seqLen % 2 !== 0)
    throw new Error(`a KTO batch's rows hold two sequences: ${seqLen} tokens is odd`);
  const T = seqLen / 2;
  const pick = (a: Int32Array) =>
    Int32Array.from(
      { length: B * T },
      (_, i) => a[Math.floor(i / T) * seqLen + half * T + (i % T)]!,
    );
  return { ids: pick(batch.ids), labels: pick(batch.labels), batchSize: B, seqLen: T };
}

/** Rows whose completion has a labelled token (every row of prepared data). */
export function countKtoRows(batch: TokenBatch): number {
  const { batchSize: B, seqLen } = batch;
  const T = seqLen / 2;
  let n = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 1; t < T; t++) {
      if (batch.labels[b * seqLen + t] !== IGNORE_INDEX) {
        n++;
        break;
      }
    }
  }
  return n;
}

/**
 * A micro-batch's KL sums, [2]: the summed logp(KL seq) - ref(KL seq) over
 * its rows, and its rows. Off the tape and without dropout, as TRL's
 * (torch.no_grad; disable_dropout).
 */
export async function ktoKlSums(model: CausalLM, batch: TokenBatch): Promise<Float32Array> {
  const kl = ktoHalf(batch, 1);
  const sum = tf.tidy(() => {
    const policy = sequenceLogps(model, kl);
    const ref = withReference(model, () => sequenceLogps(model, kl));
    return tf.sum(tf.sub(policy, ref));
  });
  const value = (await sum.data())[0]!; // asynchronous: the only read webgpu under Node allows
  sum.dispose();
  return Float32Array.of(value, batch.batchSize);
}

/** The KL estimate from a batch's summed KL sums: their mean, at least 0 (TRL's clamp). */
export const ktoKl = (sums: ArrayLike<number>): number =>
  sums[1]! > 0 ? Math.max(0, sums[0]! / sums[1]!) : 0;

/**
 * Each row's loss, [B], from its completion's policy and reference
 * log-probabilities [B], its label (1 desirable) and the KL estimate.
 */
export function ktoLosses(
  logps: tf.Tensor1D,
  ref: tf.Tensor1D,
  desirable: Uint8Array,
  kl: number,
  { beta, loss = 'kto', desirableWeight = 1, undesirableWeight = 1 }: KtoSettings,
): tf.Tensor1D {
  return tf.tidy(() => {
    const r = tf.sub(logps, ref); // [B] log-ratios
    const good = tf.tensor1d(desirable, 'float32'); // [B], 1 desirable
    const shift = loss === 'kto' ? kl : 0;
    // desirable: 1 - sigmoid(beta (r - KL)); undesirable: 1 - sigmoid(beta (KL - r)) (kto)
    // or sigmoid(beta r) (apo_zero_unpaired, whose KL is 0: the same)
    const up = tf.sub(1, tf.sigmoid(tf.mul(tf.sub(r, shift), beta)));
    const down = tf.sub(1, tf.sigmoid(tf.mul(tf.sub(shift, r), beta)));
    const weights = tf.add(
      tf.mul(good, desirableWeight),
      tf.mul(tf.sub(1, good), undesirableWeight),
    );
    return tf.mul(tf.add(tf.mul(good, up), tf.mul(tf.sub(1, good), down)), weights) as tf.Tensor1D;
  });
}

/** A KTO batch's labels, [B]: its rows' `desirable` flags (data's unpaired rows). */
export function desirableOf(batch: TokenBatch): Uint8Array {
  if (!batch.desirable || batch.desirable.length !== batch.batchSize) {
    throw new Error(
      'a KTO batch needs each row\'s label (rows of {"prompt","completion","label"} lines)',
    );
  }
  return batch.desirable;
}

/**
 * What a KTO batch's stats hold, in order: sums that workers add. TRL's KTO
 * logs divide the rewards (beta r) and the policy's log-probabilities of the
 * desirable examples by their count, those of the undesirable ones by theirs;
 * its token logs, over the completions' labelled tokens: the entropy over
 * all of them, each class's mean-over-vocabulary logits over its own
 * (logits/chosen, logits/rejected).
 */
export const KTO_STATS = [
  'desirable',
  'chosenSum',
  'rejectedSum',
  'chosenLogpSum',
  'rejectedLogpSum',
  'chosenTokens',
  'rejectedTokens',
  'entropySum',
  'chosenLogitSum',
  'rejectedLogitSum',
] as const;

export type KtoStatSums = { [K in (typeof KTO_STATS)[number]]: number };

/** ktoStats' values by name; zeros where `stats` holds none. */
export function ktoStatSums(stats: ArrayLike<number>): KtoStatSums {
  const values = Array.from(stats);
  return Object.fromEntries(KTO_STATS.map((k, i) => [k, values[i] ?? 0])) as KtoStatSums;
}

/**
 * TRL's KTO logs (rewards/*, logps/*, kl; entropy, logits/*), each mean
 * present where it has examples (or tokens) to average.
 */
export interface KtoLogs {
  rewardChosen?: number;
  rewardRejected?: number;
  rewardMargin?: number;
  logpsChosen?: number;
  logpsRejected?: number;
  entropy?: number;
  logitsChosen?: number;
  logitsRejected?: number;
  kl: number;
}

/** The logs from summed stats over `examples` examples and the KL estimate. */
export function ktoLogs(sums: KtoStatSums, examples: number, kl: number): KtoLogs {
  const [good, bad] = [sums.desirable, examples - sums.desirable];
  const chosen =
    good > 0 ? { rewardChosen: sums.chosenSum / good, logpsChosen: sums.chosenLogpSum / good } : {};
  const rejected =
    bad > 0
      ? { rewardRejected: sums.rejectedSum / bad, logpsRejected: sums.rejectedLogpSum / bad }
      : {};
  const margin =
    good > 0 && bad > 0 ? { rewardMargin: sums.chosenSum / good - sums.rejectedSum / bad } : {};
  return { ...chosen, ...rejected, ...margin, ...ktoTokenLogs(sums), kl };
}

/** KtoLogs' token metrics (TRL's entropy, 0 without tokens; logits/* where the class has tokens). */
function ktoTokenLogs(
  sums: KtoStatSums,
): Pick<KtoLogs, 'entropy' | 'logitsChosen' | 'logitsRejected'> {
  const { chosenTokens: c, rejectedTokens: r } = sums;
  return {
    entropy: c + r > 0 ? sums.entropySum / (c + r) : 0,
    ...(c > 0 ? { logitsChosen: sums.chosenLogitSum / c } : {}),
    ...(r > 0 ? { logitsRejected: sums.rejectedLogitSum / r } : {}),
  };
}

/** What ktoStats reads of a batch's completions: their policy pass, reference, labels and tokens. */
interface KtoScored {
  /** Policy and reference log-probabilities, [B]. */
  logps: tf.Tensor1D;
  ref: tf.Tensor1D;
  desirable: Uint8Array;
  /** Each completion's RESPONSE_COLUMNS sums [B, 3], and its labelled tokens [B]. */
  metrics: tf.Tensor2D;
  tokens: Float32Array;
}

/** [10] (KTO_STATS) of a batch's scored completions. */
function ktoStats({ logps, ref, desirable, metrics, tokens }: KtoScored, beta: number) {
  return tf.tidy(() => {
    const good = tf.tensor1d(desirable, 'float32');
    const bad = tf.sub(1, good);
    const rewards = tf.mul(tf.sub(logps, ref), beta);
    const sum = (x: tf.Tensor, mask: tf.Tensor) => tf.sum(tf.mul(x, mask));
    const [, entropy, logit] = tf.unstack(metrics, 1) as tf.Tensor1D[]; // [B] each
    const count = tf.tensor1d(tokens);
    return tf.stack([
      tf.sum(good),
      sum(rewards, good),
      sum(rewards, bad),
      sum(logps, good),
      sum(logps, bad),
      sum(count, good),
      sum(count, bad),
      tf.sum(entropy!),
      sum(logit!, good),
      sum(logit!, bad),
    ]) as tf.Tensor1D;
  });
}

/**
 * A KTO batch's losses under `options`, given the step's KL estimate: the
 * reference pass on the completions first, off the tape. `scores` gives
 * the summed loss and the batch's stats (KTO_STATS), the latter not to be
 * differentiated.
 */
export function ktoLoss(model: CausalLM, batch: TokenBatch, settings: KtoSettings, kl: number) {
  const completions = ktoHalf(batch, 0);
  const desirable = desirableOf(batch);
  const ref = withReference(model, () => sequenceLogps(model, completions)); // [B], untaped
  const tokens = labelledTokenCounts(completions, model.modelConfig.vocabSize);
  return {
    scores: (options: ForwardPassOptions): { sum: tf.Scalar; stats: tf.Tensor1D } =>
      tf.tidy(() => {
        // The policy pass, with TRL's token metrics from its logits
        const pass = weightedLogps(model, completions, options, null, { responseMetrics: true });
        const logps = pass.sums; // [B]
        const sum = tf.sum(ktoLosses(logps, ref, desirable, kl, settings)) as tf.Scalar;
        const scored = { logps, ref, desirable, metrics: pass.metrics!, tokens };
        return { sum, stats: ktoStats(scored, settings.beta) };
      }),
    dispose: () => ref.dispose(),
  };
}

/** Yields to the event loop, then awaits `beforeBatch`: between held-out batches. */
const nextBatch = (beforeBatch?: () => Promise<void>) => async () => {
  await new Promise<void>((resolve) => setImmediate(resolve));
  await beforeBatch?.();
};

/** The KL sums, [2], over held-out batches: what workers add before ktoKl. */
export async function ktoKlSumsOver(
  model: CausalLM,
  batches: readonly TokenBatch[],
  beforeBatch?: () => Promise<void>,
): Promise<Float32Array> {
  const next = nextBatch(beforeBatch);
  const sums = new Float32Array(2);
  for (const batch of batches) {
    await next();
    (await ktoKlSums(model, batch)).forEach((v, i) => (sums[i]! += v));
  }
  return sums;
}

/**
 * The KTO loss of `model` as it is on held-out batches, as sums that workers
 * add, given the held-out set's KL estimate `kl` (workers evaluating shards
 * add their ktoKlSumsOver first); without it, where the loss reads one, the
 * estimate over `batches` themselves. Yields between batches and awaits
 * `beforeBatch` before each one's forward passes.
 */
export async function evaluateKto(
  model: CausalLM,
  batches: readonly TokenBatch[],
  settings: KtoSettings,
  beforeBatch?: () => Promise<void>,
  kl?: number,
): Promise<KtoEvaluation> {
  const next = nextBatch(beforeBatch);
  kl ??= ktoReadsKl(settings) ? ktoKl(await ktoKlSumsOver(model, batches, beforeBatch)) : 0;
  const out: KtoEvaluation = { lossSum: 0, examples: 0, ...ktoStatSums([]), kl };
  for (const batch of batches) {
    await next();
    if (countKtoRows(batch) !== batch.batchSize) {
      throw new Error('a KTO batch holds an example without a labelled completion token');
    }
    const loss = ktoLoss(model, batch, settings, kl);
    try {
      const { sum, stats } = loss.scores({});
      const values = [(await sum.data())[0]!, ...(await stats.data())];
      tf.dispose([sum, stats]);
      out.lossSum += values[0]!;
      KTO_STATS.forEach((k, i) => (out[k] += values[i + 1]!));
    } finally {
      loss.dispose();
    }
    out.examples += batch.batchSize;
  }
  return out;
}

/** A held-out set's KTO sums (which workers add) and its KL estimate (the same on every worker). */
export interface KtoEvaluation extends KtoStatSums {
  lossSum: number;
  examples: number;
  kl: number;
}
