// torch.optim.Adagrad (transformers' `adagrad`; optim_args lr_decay, eps),
// weight decay added to the gradient (L2, as torch's). Per element, t the step:
//   g += wd * p
//   sum += g^2
//   p -= lr / (1 + (t - 1) * lr_decay) * g / (sqrt(sum) + eps)
import { type OptimizerRule, elementRates } from './rule.js';

export interface AdagradOptions {
  lr: number;
  lrDecay: number;
  eps: number;
  weightDecay: number;
  /** The accumulator's start (torch's initial_accumulator_value; transformers leaves it 0). */
  initialAccumulatorValue: number;
}

/** torch.optim.Adagrad's defaults (lr aside). */
export const ADAGRAD_DEFAULTS: Omit<AdagradOptions, 'lr'> = {
  lrDecay: 0,
  eps: 1e-10,
  weightDecay: 0,
  initialAccumulatorValue: 0,
};

export const ADAGRAD: OptimizerRule<AdagradOptions> = {
  title: 'Adagrad',
  stateShapes: (_, shape) => ({ sum: shape }),
  update(params, grads, state, o, context) {
    const sum = state.buffers.sum!;
    const decay = 1 + (state.step - 1) * o.lrDecay;
    for (let i = 0; i < params.length; i++) {
      const [lr, wd] = elementRates(i, context.lr, o.weightDecay, context);
      const g = grads[i]! + wd * params[i]!;
      sum[i] = sum[i]! + g * g;
      params[i] = params[i]! - ((lr / decay) * g) / (Math.sqrt(sum[i]!) + o.eps);
    }
  },
};
