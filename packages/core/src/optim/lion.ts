// Lion (Chen et al. 2023, arXiv 2302.06675, Algorithm 1), as bitsandbytes'
// 32-bit Lion that transformers' `lion_32bit` runs, with betas from
// adam_beta1 and adam_beta2 (transformers passes those) and decoupled weight
// decay. Per element:
//   p -= lr * wd * p
//   p -= lr * sign(beta1 * exp_avg + (1 - beta1) g)
//   exp_avg = beta2 * exp_avg + (1 - beta2) g
import { type OptimizerRule, elementRates } from './rule.js';

export interface LionOptions {
  lr: number;
  beta1: number;
  beta2: number;
  weightDecay: number;
}

export const LION: OptimizerRule<LionOptions> = {
  title: 'Lion',
  stateShapes: (_, shape) => ({ exp_avg: shape }),
  update(params, grads, state, o, context) {
    const m = state.buffers.exp_avg!;
    for (let i = 0; i < params.length; i++) {
      const [lr, wd] = elementRates(i, context.lr, o.weightDecay, context);
      const g = grads[i]!;
      const c = o.beta1 * m[i]! + (1 - o.beta1) * g;
      params[i] = params[i]! * (1 - lr * wd) - lr * Math.sign(c);
      m[i] = o.beta2 * m[i]! + (1 - o.beta2) * g;
    }
  },
};
