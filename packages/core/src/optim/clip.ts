/** The L2 norm of all gradients together (computed in float64). */
export function globalNorm(grads: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < grads.length; i++) sum += grads[i]! * grads[i]!;
  return Math.sqrt(sum);
}

/**
 * torch.nn.utils.clip_grad_norm_ on a fused gradient buffer: scales in place
 * by maxNorm / (norm + 1e-6) when the norm exceeds maxNorm. Returns the norm
 * before clipping (what trainers log). A non-finite norm is returned as is
 * and the buffer left untouched, so the caller can skip the step.
 */
export function clipGlobalNorm(grads: Float32Array, maxNorm: number): number {
  if (!(maxNorm > 0)) throw new Error(`max gradient norm must be positive, got ${maxNorm}`);
  const norm = globalNorm(grads);
  if (!Number.isFinite(norm)) return norm;
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) {
    for (let i = 0; i < grads.length; i++) grads[i] = grads[i]! * coef;
  }
  return norm;
}
