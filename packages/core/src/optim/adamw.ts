// AdamW with PyTorch's semantics (torch.optim.AdamW, amsgrad off) on one fused
// Float32Array of parameters. Plain JS doubles, rounded to float32 on store:
// every replica and backend computes the same bits, and LoRA's parameters are
// few enough that this costs nothing next to the forward pass.

export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay (Loshchilov & Hutter): p -= lr * weightDecay * p. */
  weightDecay: number;
}

/** torch.optim.AdamW's defaults. */
export const ADAMW_DEFAULTS: AdamWOptions = {
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
};

/** The optimizer's whole state: moments and the step count. Snapshots copy it. */
export interface AdamWState {
  step: number;
  m: Float32Array;
  v: Float32Array;
}

export function createAdamWState(size: number): AdamWState {
  return { step: 0, m: new Float32Array(size), v: new Float32Array(size) };
}

export function cloneAdamWState(s: AdamWState): AdamWState {
  return { step: s.step, m: s.m.slice(), v: s.v.slice() };
}

/**
 * One AdamW step in place on `params` and `state`; `lr` overrides
 * `options.lr` (for schedules). Per element, with t the new step count:
 *   p -= lr * wd * p
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * With `lrScales`, element i takes lr * lrScales[i] in both places, as a
 * torch parameter group of that learning rate would (LoRA+: loraplus.ts);
 * with `decayScales`, its weight decay is wd * decayScales[i] (0 for the
 * parameters Trainer exempts: weight-decay.ts).
 */
export function adamWStep(
  params: Float32Array,
  grads: Float32Array,
  state: AdamWState,
  options: AdamWOptions,
  lr = options.lr,
  lrScales: Float64Array | null = null,
  decayScales: Float64Array | null = null,
): void {
  const n = params.length;
  if (grads.length !== n || state.m.length !== n || state.v.length !== n) {
    throw new Error(
      `AdamW: params (${n}), grads (${grads.length}) and moments (${state.m.length}, ${state.v.length}) differ in length`,
    );
  }
  for (const [what, scales] of [
    ['learning-rate', lrScales],
    ['weight-decay', decayScales],
  ] as const) {
    if (scales && scales.length !== n)
      throw new Error(`AdamW: ${scales.length} ${what} factors for ${n} parameters`);
  }
  const { beta1, beta2, eps, weightDecay } = options;
  const t = ++state.step;
  if (lrScales || decayScales) {
    return scaledStep(params, grads, state, options, lr, { lr: lrScales, decay: decayScales });
  }
  const stepSize = lr / (1 - beta1 ** t);
  const bias2Sqrt = Math.sqrt(1 - beta2 ** t);
  const decay = 1 - lr * weightDecay;
  const { m, v } = state;
  for (let i = 0; i < n; i++) {
    const g = grads[i]!;
    const mi = beta1 * m[i]! + (1 - beta1) * g;
    const vi = beta2 * v[i]! + (1 - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    params[i] = params[i]! * decay - (stepSize * m[i]!) / (Math.sqrt(v[i]!) / bias2Sqrt + eps);
  }
}

/** adamWStep's update with a learning rate and weight decay per element (state.step already counts this step). */
function scaledStep(
  params: Float32Array,
  grads: Float32Array,
  state: AdamWState,
  { beta1, beta2, eps, weightDecay }: AdamWOptions,
  lr: number,
  scales: { lr: Float64Array | null; decay: Float64Array | null },
): void {
  const t = state.step;
  const [correction1, bias2Sqrt] = [1 - beta1 ** t, Math.sqrt(1 - beta2 ** t)];
  const { m, v } = state;
  for (let i = 0; i < params.length; i++) {
    const lri = scales.lr ? lr * scales.lr[i]! : lr; // a torch group's lr: lr * ratio, in float64
    const wdi = scales.decay ? weightDecay * scales.decay[i]! : weightDecay; // its weight_decay
    const g = grads[i]!;
    m[i] = beta1 * m[i]! + (1 - beta1) * g;
    v[i] = beta2 * v[i]! + (1 - beta2) * g * g;
    const decayed = params[i]! * (1 - lri * wdi);
    params[i] = decayed - ((lri / correction1) * m[i]!) / (Math.sqrt(v[i]!) / bias2Sqrt + eps);
  }
}
