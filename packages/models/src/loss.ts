// Causal-LM loss as Hugging Face computes it: logits at position t predict the
// label at t + 1; labels of -100 are ignored.
import { checkpoint, settleDevice, softmaxCrossEntropy, tf, tokenStats } from '@lorafleet/core';
import type { CausalLM, ForwardPassOptions } from './causal-lm.js';
import { IGNORE_INDEX, type TokenBatch, shiftedLabels } from './labels.js';
import { withDocuments } from './packed-documents.js';
import { scheduledEvaluation } from './scheduled-loss.js';

export { IGNORE_INDEX, type TokenBatch, shiftedLabels };

/** How many labels count toward the loss after the shift (positions 1..T-1 of each row). */
export function countLossTokens(batch: TokenBatch): number {
  let n = 0;
  for (let b = 0; b < batch.batchSize; b++) {
    for (let t = 1; t < batch.seqLen; t++)
      if (batch.labels[b * batch.seqLen + t] !== IGNORE_INDEX) n++;
  }
  return n;
}

/**
 * The summed negative log-likelihood of the batch's labelled tokens, as a
 * scalar to differentiate. Summing (not averaging) lets data-parallel workers
 * add their sums and divide by the global token count.
 */
export function tokenNllSum(
  model: CausalLM,
  batch: TokenBatch,
  options: ForwardPassOptions = {},
): tf.Scalar {
  return tokenLoss(model, batch, options, false).sum;
}

/** What TOKEN_STATS sums over a batch's labelled tokens, in order: TRL's SFT metrics' numerators. */
export const TOKEN_STATS = ['correct', 'entropy'] as const;

export type TokenStatSums = { [K in (typeof TOKEN_STATS)[number]]: number };

/** TokenStatSums of a stats vector (TOKEN_STATS order; zeros where it is shorter). */
export function tokenStatSums(values: ArrayLike<number>): TokenStatSums {
  return { correct: values[0] ?? 0, entropy: values[1] ?? 0 };
}

/**
 * tokenNllSum and, beside it, the batch's TOKEN_STATS [2]: how many labelled
 * tokens the logits' argmax predicts, and their summed entropy (TRL's
 * `mean_token_accuracy` and `entropy` times the token count). The stats
 * are not part of the loss: differentiate `sum` only.
 */
export function tokenLossAndStats(
  model: CausalLM,
  batch: TokenBatch,
  options: ForwardPassOptions = {},
): { sum: tf.Scalar; stats: tf.Tensor1D } {
  const { sum, stats } = tokenLoss(model, batch, options, true);
  return { sum, stats: stats! };
}

function tokenLoss(
  model: CausalLM,
  batch: TokenBatch,
  options: ForwardPassOptions,
  withStats: boolean,
): { sum: tf.Scalar; stats?: tf.Tensor1D } {
  const { batchSize: B, seqLen: T } = batch;
  options = withDocuments(options, batch);
  const V = model.modelConfig.vocabSize;
  // Training keeps the logits for backward unless checkpointed; evaluation never needs all of them.
  const chunked = options.training
    ? options.gradientCheckpointing === true
    : B * T > lossChunkRows(V);
  if (chunked) {
    return tf.tidy(() => {
      const sums = chunkedSums(model, batch, options, lossChunkRows(V), withStats); // [1] or [3]
      const sum = sums.slice(0, 1).reshape([]) as tf.Scalar;
      return withStats ? { sum, stats: sums.slice(1, 2) as tf.Tensor1D } : { sum };
    });
  }
  const shifted = shiftedLabels(batch, V); // [B * T]
  return tf.tidy(() => {
    const ids = tf.tensor2d(batch.ids, [B, T], 'int32');
    const logits = model.forward(ids, options).reshape([B * T, V]) as tf.Tensor2D; // [B*T, V]
    const labels = tf.tensor1d(shifted, 'int32');
    // Fused on cpu and wasm: no [B*T, V] probabilities are kept for the backward pass.
    const sum = tf.sum(softmaxCrossEntropy(logits, labels)) as tf.Scalar;
    // The stats [2] stay off the loss's path: no gradient flows to them.
    if (!withStats) return { sum };
    return { sum, stats: tf.sum(tokenStats(logits, labels), 0) as tf.Tensor1D }; // [2]
  });
}

/** Logits a checkpointed loss computes at a time: 2^22 floats (16 MiB). */
export const LOSS_CHUNK_LOGITS = 2 ** 22;

/** Rows of [N, V] logits per chunk of the checkpointed loss (at least 1). */
export function lossChunkRows(vocabSize: number): number {
  return Math.max(1, Math.floor(LOSS_CHUNK_LOGITS / vocabSize));
}

/**
 * tokenNllSum over chunks of `chunkRows` positions: the head and the loss
 * of each chunk run through core's checkpoint, so no more than one chunk's
 * logits [chunkRows, V] live at a time, instead of [B*T, V] (what a large
 * vocabulary makes the biggest activation, as Liger's fused linear
 * cross-entropy avoids): under a tape (training with gradient
 * checkpointing, whose layers are recomputed too) each chunk is recomputed
 * in backward; in evaluation it is freed as the next begins. A chunk
 * without a labelled position is skipped. One chunk (a small vocabulary)
 * sums as the whole does.
 */
export function chunkedNllSum(
  model: CausalLM,
  batch: TokenBatch,
  options: ForwardPassOptions,
  chunkRows = lossChunkRows(model.modelConfig.vocabSize),
): tf.Scalar {
  return tf.tidy(() => chunkedSums(model, batch, options, chunkRows, false).reshape([]));
}

/** chunkedNllSum as [1], or with `withStats` [3]: the sum, then the TOKEN_STATS. */
function chunkedSums(
  model: CausalLM,
  batch: TokenBatch,
  options: ForwardPassOptions,
  chunkRows: number,
  withStats: boolean,
): tf.Tensor1D {
  const { batchSize: B, seqLen: T } = batch;
  const [N, V] = [B * T, model.modelConfig.vocabSize];
  const shifted = shiftedLabels(batch, V); // [N]
  return tf.tidy(() => {
    const ids = tf.tensor2d(batch.ids, [B, T], 'int32');
    const h = model.hidden(ids, withDocuments(options, batch));
    const C = h.shape[2];
    const hidden = h.reshape([N, C]) as tf.Tensor2D; // [N, C]
    // [1], or [3] with the chunk's TOKEN_STATS: their gradient is zero, which changes nothing
    // but costs a zero [n, V] added to the logits' gradient when backward recomputes the chunk.
    const loss = (x: tf.Tensor, [labels]: readonly tf.Tensor[]) => {
      const logits = model.logits(x as tf.Tensor2D);
      const nll = tf.sum(softmaxCrossEntropy(logits, labels as tf.Tensor1D)).reshape([1]);
      if (!withStats) return nll;
      return tf.concat([nll, tf.sum(tokenStats(logits, labels as tf.Tensor1D), 0)]);
    };
    const { chunks, sizes } = rowChunks(hidden, chunkRows);
    const parts: tf.Tensor[] = [];
    chunks.forEach((rows, i) => {
      const labels = shifted.subarray(i * chunkRows, i * chunkRows + sizes[i]!);
      if (labels.every((l) => l === IGNORE_INDEX)) return;
      const chunk = tf.tensor1d(labels, 'int32');
      parts.push(checkpoint(loss, rows, [chunk], model.headVariables()));
    });
    // Nothing labelled: zeros, still a function of the hidden states.
    if (parts.length > 0) return tf.addN(parts) as tf.Tensor1D;
    return tf.mul(tf.sum(hidden), tf.zeros([withStats ? 3 : 1])) as tf.Tensor1D;
  });
}

/**
 * Rows [N, C] in chunks of at most `chunkRows`. One split, not a slice per
 * chunk: a slice's gradient is [N, C], and tfjs keeps every node's input
 * gradient until the backward pass ends.
 */
function rowChunks(rows: tf.Tensor2D, chunkRows: number) {
  const N = rows.shape[0];
  const sizes = Array.from({ length: Math.ceil(N / chunkRows) }, (_, i) =>
    Math.min(chunkRows, N - i * chunkRows),
  );
  const chunks = sizes.length === 1 ? [rows] : (tf.split(rows, sizes, 0) as tf.Tensor2D[]); // [n, C] each
  return { chunks, sizes };
}

/**
 * Each position's negative log-likelihood of its label, [B*T] (0 where
 * unlabelled), for losses that weigh positions by sequence (the preference objectives). Computed
 * a chunk of logits at a time exactly when tokenNllSum would be: training
 * with gradient checkpointing, or an evaluation batch whose logits pass
 * LOSS_CHUNK_LOGITS.
 */
export function positionNll(
  model: CausalLM,
  batch: TokenBatch,
  options: ForwardPassOptions = {},
  chunkRows = lossChunkRows(model.modelConfig.vocabSize),
): tf.Tensor1D {
  const nll = (logits: tf.Tensor2D, labels: tf.Tensor1D) =>
    softmaxCrossEntropy(logits, labels).expandDims(1) as tf.Tensor2D; // [n, 1]
  return tf.tidy(() => positionColumns(model, batch, options, nll, 1, chunkRows).reshape([-1]));
}

/**
 * [B*T, k]: `columns` of each position's logits and label, computed as
 * positionNll computes its one column (chunked and recomputed in backward
 * where it is); rows without a label in a chunk of none are 0.
 */
export function positionColumns(
  model: CausalLM,
  batch: TokenBatch,
  options: ForwardPassOptions,
  columns: (logits: tf.Tensor2D, labels: tf.Tensor1D) => tf.Tensor2D,
  k: number,
  chunkRows = lossChunkRows(model.modelConfig.vocabSize),
): tf.Tensor2D {
  const { batchSize: B, seqLen: T } = batch;
  const [N, V] = [B * T, model.modelConfig.vocabSize];
  const shifted = shiftedLabels(batch, V); // [N]
  const chunked = options.training ? options.gradientCheckpointing === true : N > lossChunkRows(V);
  options = withDocuments(options, batch);
  return tf.tidy(() => {
    const ids = tf.tensor2d(batch.ids, [B, T], 'int32');
    if (!chunked) {
      const logits = model.forward(ids, options).reshape([N, V]) as tf.Tensor2D; // [N, V]
      return columns(logits, tf.tensor1d(shifted, 'int32'));
    }
    const hidden = model.hidden(ids, options);
    const { chunks, sizes } = rowChunks(hidden.reshape([N, hidden.shape[2]]), chunkRows);
    const of = (x: tf.Tensor, [labels]: readonly tf.Tensor[]) =>
      columns(model.logits(x as tf.Tensor2D), labels as tf.Tensor1D);
    const parts = chunks.map((rows, i) => {
      const labels = shifted.subarray(i * chunkRows, i * chunkRows + sizes[i]!);
      if (labels.every((l) => l === IGNORE_INDEX)) return tf.zeros([sizes[i]!, k]);
      return checkpoint(of, rows, [tf.tensor1d(labels, 'int32')], model.headVariables()); // [n, k]
    });
    return (parts.length === 1 ? parts[0]! : tf.concat(parts)) as tf.Tensor2D;
  });
}

/**
 * Mean token loss and perplexity over batches, in eval mode, with TRL's SFT
 * metrics over the same tokens: the share the argmax predicts
 * (mean_token_accuracy) and the mean entropy in nats.
 */
export async function evaluateLoss(
  model: CausalLM,
  batches: Iterable<TokenBatch>,
): Promise<{
  loss: number;
  perplexity: number;
  tokens: number;
  meanTokenAccuracy: number;
  entropy: number;
}> {
  const { lossSum, tokens, stats } = await evaluateLossSums(model, batches);
  if (tokens === 0) throw new Error('no labelled tokens to evaluate');
  const loss = lossSum / tokens;
  const [meanTokenAccuracy, entropy] = [stats.correct / tokens, stats.entropy / tokens];
  return { loss, perplexity: Math.exp(loss), tokens, meanTokenAccuracy, entropy };
}

/**
 * Loss sum, loss tokens and their TOKEN_STATS sums over `batches`, read
 * asynchronously (the only way a GPU backend allows under Node) and yielding
 * to the event loop between batches, so a worker keeps heartbeating through
 * a long evaluation.
 */
export async function evaluateLossSums(
  model: CausalLM,
  batches: Iterable<TokenBatch>,
  /** Awaited before each batch's (blocking) forward pass. */
  beforeBatch?: () => Promise<void>,
): Promise<{ lossSum: number; tokens: number; stats: TokenStatSums }> {
  const scheduled = scheduledEvaluation(model); // webgpu: the hand-scheduled forward
  const sums = [0, 0, 0]; // loss, then TOKEN_STATS
  let tokens = 0;
  try {
    for (const batch of batches) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      const count = countLossTokens(batch);
      if (count === 0) continue;
      await beforeBatch?.();
      // Packed documents where the family's plan cannot take them: the tape's forward.
      if (scheduled?.takes(batch)) {
        scheduled.add(batch);
        await settleDevice(); // each batch's device work done before the next notice
      } else {
        const both = tf.tidy(() => {
          const { sum, stats } = tokenLossAndStats(model, batch);
          return tf.concat([sum.reshape([1]), stats]);
        });
        try {
          (await both.data()).forEach((v, i) => (sums[i]! += v));
        } finally {
          both.dispose();
        }
      }
      tokens += count;
    }
    if (scheduled) {
      const { lossSum, stats } = await scheduled.take();
      [sums[0], sums[1], sums[2]] = [
        sums[0]! + lossSum,
        sums[1]! + stats[0]!,
        sums[2]! + stats[1]!,
      ];
    }
  } finally {
    scheduled?.dispose();
  }
  return { lossSum: sums[0]!, tokens, stats: tokenStatSums(sums.slice(1)) };
}
