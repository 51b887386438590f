// torch.optim.SGD (transformers' `sgd`; optim_args momentum, dampening,
// nesterov), weight decay added to the gradient (L2, as torch's). Per element:
//   g += wd * p
//   momentum: buf = g at the first step, else momentum * buf + (1 - dampening) * g;
//             g = nesterov ? g + momentum * buf : buf
//   p -= lr * g
import { type OptimizerRule, elementRates } from './rule.js';

export interface SgdOptions {
  lr: number;
  momentum: number;
  dampening: number;
  nesterov: boolean;
  weightDecay: number;
}

/** torch.optim.SGD's defaults (lr aside). */
export const SGD_DEFAULTS: Omit<SgdOptions, 'lr'> = {
  momentum: 0,
  dampening: 0,
  nesterov: false,
  weightDecay: 0,
};

export const SGD: OptimizerRule<SgdOptions> = {
  title: 'SGD',
  stateShapes: (o, shape) => ({ momentum_buffer: o.momentum !== 0 ? shape : null }),
  update(params, grads, state, o, context) {
    const buf = state.buffers.momentum_buffer;
    const first = state.step === 1;
    for (let i = 0; i < params.length; i++) {
      const [lr, wd] = elementRates(i, context.lr, o.weightDecay, context);
      let g = grads[i]! + wd * params[i]!;
      if (buf) {
        buf[i] = first ? g : o.momentum * buf[i]! + (1 - o.dampening) * g;
        g = o.nesterov ? g + o.momentum * buf[i]! : buf[i]!;
      }
      params[i] = params[i]! - lr * g;
    }
  },
};
