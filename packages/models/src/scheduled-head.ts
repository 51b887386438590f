// The LM head and loss of a hand-scheduled step (scheduled-step.ts), shared
// by the families' recipes: logits = y head^T, the cross-entropy's per-row
// (nll, lse) and its sum (with TRL's token metrics: loss.ts TOKEN_STATS), then dlogits over the logits (in place) and
// d y = dlogits head. A vocabulary that is not a multiple of 4 (GPT-2's
// 50,257) is padded: the logits are written into rows of V rounded up to 4
// (the padding ignored by the loss, set to 0 by its gradient), so that the
// gradient product, whose k is the vocabulary, loads vec4 rather than
// scalars (on the H200, 2026-12-04, that product ran at 21 TFLOP/s against
// the logits' 29: docs/webgpu-kernels.md). Granite divides the logits by
// logits_scaling (the products' alpha); Gemma 2 soft-caps them, cap
// tanh(logits / cap), in place before the loss, and the gradient kernel
// multiplies by the cap's slope.
import type { PlanOps, tf } from '@lorafleet/core';
import type { StepIo } from './scheduled-step.js';

type Info = tf.TensorInfo;

/** How the logits are shaped after the product: divided by `scaling`, then soft-capped at `softcap` (0: not). */
export interface LogitShaping {
  scaling: number;
  softcap: number;
}

/**
 * The loss sum of hidden states y [N, C] under `head` [V, C] with the
 * TOKEN_STATS sums beside it, [3], and (training) d y [N, C].
 */
export function headAndLoss(
  ops: PlanOps,
  io: StepIo,
  y: Info,
  head: Info,
  { scaling, softcap }: LogitShaping = { scaling: 1, softcap: 0 },
): { loss: Info; dy: Info | null } {
  const vocab = head.shape[0]!;
  const width = Math.ceil(vocab / 4) * 4; // the logits' padded rows
  const padded = width !== vocab;
  const alpha = 1 / scaling;
  const logits = ops.mm(y, head, { transposeB: true, alpha, ...(padded ? { ldc: width } : {}) }); // [N, W]
  if (softcap > 0) ops.softcapInPlace(logits, softcap);
  const stats = ops.crossEntropy(logits, io.labels, vocab); // [N, 2]: nll, lse
  const loss = ops.lossSums(stats, ops.tokenStats(logits, io.labels, vocab)); // [3]: nll, hits, entropy
  if (io.forwardOnly) return { loss, dy: null };
  const dLogits = ops.crossEntropyGradInPlace(logits, stats, io.labels, io.ones, vocab, softcap); // [N, W]
  return { loss, dy: ops.mm(dLogits, head, { alpha, ...(padded ? { lda: width } : {}) }) }; // [N, C]
}
