// torch.optim.RMSprop (transformers' `rmsprop`; optim_args momentum, alpha,
// eps; not centered, which transformers cannot ask for), weight decay added to
// the gradient (L2, as torch's). Per element:
//   g += wd * p
//   square_avg = alpha * square_avg + (1 - alpha) g^2;  d = sqrt(square_avg) + eps
//   momentum: buf = momentum * buf + g / d;  p -= lr * buf
//   else:     p -= lr * g / d
import { type OptimizerRule, elementRates } from './rule.js';

export interface RmspropOptions {
  lr: number;
  alpha: number;
  eps: number;
  momentum: number;
  weightDecay: number;
}

/** torch.optim.RMSprop's defaults (lr aside). */
export const RMSPROP_DEFAULTS: Omit<RmspropOptions, 'lr'> = {
  alpha: 0.99,
  eps: 1e-8,
  momentum: 0,
  weightDecay: 0,
};

export const RMSPROP: OptimizerRule<RmspropOptions> = {
  title: 'RMSprop',
  stateShapes: (o, shape) => ({
    square_avg: shape,
    momentum_buffer: o.momentum > 0 ? shape : null,
  }),
  update(params, grads, state, o, context) {
    const { square_avg: avg, momentum_buffer: buf } = state.buffers as Record<string, Float32Array>;
    for (let i = 0; i < params.length; i++) {
      const [lr, wd] = elementRates(i, context.lr, o.weightDecay, context);
      const g = grads[i]! + wd * params[i]!;
      avg![i] = o.alpha * avg![i]! + (1 - o.alpha) * g * g;
      const d = Math.sqrt(avg![i]!) + o.eps;
      if (buf) {
        buf[i] = o.momentum * buf[i]! + g / d;
        params[i] = params[i]! - lr * buf[i]!;
      } else {
        params[i] = params[i]! - (lr * g) / d;
      }
    }
  },
};
