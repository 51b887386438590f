// A run config's optimizer (RunConfig.optimizer): its kind (absent: AdamW, as
// run configs written before other optimizers) and that kind's settings, each
// checked as torch checks its constructor's arguments.
import {
  type OptimizerKind,
  type OptimizerOptionsOf,
  type OptimizerSettings,
  OPTIMIZER_KINDS,
} from '@lorafleet/core';
import type { Fields } from './run-config-fields.js';

const unit = (o: Fields, key: string) => o.numberIn(key, (x) => x >= 0 && x < 1, 'in [0, 1)');
const positive = (o: Fields, key: string) => o.numberIn(key, (x) => x > 0, '> 0');
const nonNegative = (o: Fields, key: string) => o.numberIn(key, (x) => x >= 0, '>= 0');
const common = (o: Fields) => ({
  lr: nonNegative(o, 'lr'),
  weightDecay: nonNegative(o, 'weightDecay'),
});

const READERS: { [K in OptimizerKind]: (o: Fields) => OptimizerOptionsOf[K] } = {
  adamw: (o) => ({
    ...common(o),
    beta1: unit(o, 'beta1'),
    beta2: unit(o, 'beta2'),
    eps: positive(o, 'eps'),
  }),
  sgd: (o) => ({
    ...common(o),
    momentum: nonNegative(o, 'momentum'),
    dampening: o.number('dampening'),
    nesterov: o.boolean('nesterov'),
  }),
  adagrad: (o) => ({
    ...common(o),
    lrDecay: nonNegative(o, 'lrDecay'),
    eps: nonNegative(o, 'eps'),
    initialAccumulatorValue: nonNegative(o, 'initialAccumulatorValue'),
  }),
  rmsprop: (o) => ({
    ...common(o),
    alpha: nonNegative(o, 'alpha'),
    eps: nonNegative(o, 'eps'),
    momentum: nonNegative(o, 'momentum'),
  }),
  adafactor: (o) => ({
    ...common(o),
    eps1: nonNegative(o, 'eps1'),
    clipThreshold: positive(o, 'clipThreshold'),
    decayRate: o.numberIn('decayRate', (x) => x < 0, '< 0'),
    beta1: o.has('beta1') ? unit(o, 'beta1') : null,
  }),
  lion: (o) => ({ ...common(o), beta1: unit(o, 'beta1'), beta2: unit(o, 'beta2') }),
};

export function optimizerSettings(o: Fields): OptimizerSettings {
  const kind = o.has('kind') ? o.choice('kind', OPTIMIZER_KINDS) : 'adamw';
  return { kind, ...READERS[kind](o) } as OptimizerSettings;
}
