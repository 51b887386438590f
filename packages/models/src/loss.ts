// Causal-LM loss as Hugging Face computes it: logits at position t predict the
// label at t + 1; labels of -100 are ignored.
import { settleDevice, softmaxCrossEntropy, tf } from '@lorafleet/core';
import type { CausalLM, ForwardPassOptions } from './causal-lm.js';
import { IGNORE_INDEX, type TokenBatch, shiftedLabels } from './labels.js';
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
  const { batchSize: B, seqLen: T } = batch;
  const V = model.modelConfig.vocabSize;
  const shifted = shiftedLabels(batch, V); // [B * T]
  return tf.tidy(() => {
    const ids = tf.tensor2d(batch.ids, [B, T], 'int32');
    const logits = model.forward(ids, options).reshape([B * T, V]) as tf.Tensor2D; // [B*T, V]
    // Fused on cpu and wasm: no [B*T, V] probabilities are kept for the backward pass.
    return tf.sum(softmaxCrossEntropy(logits, tf.tensor1d(shifted, 'int32'))) as tf.Scalar;
  });
}

/** Mean token loss and perplexity over batches, in eval mode. */
export async function evaluateLoss(
  model: CausalLM,
  batches: Iterable<TokenBatch>,
): Promise<{ loss: number; perplexity: number; tokens: number }> {
  const { lossSum, tokens } = await evaluateLossSums(model, batches);
  if (tokens === 0) throw new Error('no labelled tokens to evaluate');
  const loss = lossSum / tokens;
  return { loss, perplexity: Math.exp(loss), tokens };
}

/**
 * Loss sum and loss tokens over `batches`, read asynchronously (the only way a
 * GPU backend allows under Node) and yielding to the event loop between
 * batches, so a worker keeps heartbeating through a long evaluation.
 */
export async function evaluateLossSums(
  model: CausalLM,
  batches: Iterable<TokenBatch>,
  /** Awaited before each batch's (blocking) forward pass. */
  beforeBatch?: () => Promise<void>,
): Promise<{ lossSum: number; tokens: number }> {
  const scheduled = scheduledEvaluation(model); // webgpu: the hand-scheduled forward
  let lossSum = 0;
  let tokens = 0;
  try {
    for (const batch of batches) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      const count = countLossTokens(batch);
      if (count === 0) continue;
      await beforeBatch?.();
      if (scheduled) {
        scheduled.add(batch);
        await settleDevice(); // each batch's device work done before the next notice
      } else {
        const nll = tf.tidy(() => tokenNllSum(model, batch));
        try {
          lossSum += (await nll.data())[0]!;
        } finally {
          nll.dispose();
        }
      }
      tokens += count;
    }
    if (scheduled) lossSum = await scheduled.take();
  } finally {
    scheduled?.dispose();
  }
  return { lossSum, tokens };
}
