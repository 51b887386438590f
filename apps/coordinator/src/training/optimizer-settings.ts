// The run's optimizer from --optim, --optim-args, --lr, --weight-decay and
// the --adam-* options, checked as torch checks its constructor's arguments,
// with a warning wherever an option given does not do what a transformers
// user would expect (quantized state, an --adam-* option the optimizer does
// not read).
import {
  ADAFACTOR_DEFAULTS,
  ADAGRAD_DEFAULTS,
  type OptimizerKind,
  type OptimizerSettings,
  RMSPROP_DEFAULTS,
  SGD_DEFAULTS,
} from '@lorafleet/core';
import { UsageError } from '../args.js';
import { OPTIM_NAMES, type OptimName, optimizerOptions } from './optimizer-options.js';
import type { TrainOptions } from './train-spec.js';

/** The optim_args keys transformers reads for each kind (weight_decay aside: see optimArgs). */
const OPTIM_ARGS: Record<OptimizerKind, readonly string[]> = {
  adamw: [],
  sgd: ['momentum', 'dampening', 'nesterov'],
  adagrad: ['lr_decay', 'eps'],
  rmsprop: ['momentum', 'alpha', 'eps'],
  adafactor: [],
  lion: [],
};

/** Which --adam-* options each kind reads (transformers gives Lion adam_beta1 and adam_beta2). */
const READS_ADAM: Record<OptimizerKind, readonly ('adam-beta1' | 'adam-beta2' | 'adam-epsilon')[]> =
  {
    adamw: ['adam-beta1', 'adam-beta2', 'adam-epsilon'],
    sgd: [],
    adagrad: [],
    rmsprop: [],
    adafactor: [],
    lion: ['adam-beta1', 'adam-beta2'],
  };

/** --optim, checked: a known name, or a UsageError listing them. */
export function optimName(name: string): OptimName {
  if (!Object.hasOwn(OPTIM_NAMES, name)) {
    throw new UsageError(
      `train: --optim ${name}: not an optimizer this trains with; use one of ${Object.keys(OPTIM_NAMES).join(', ')}`,
    );
  }
  return name as OptimName;
}

/** The run's optimizer settings, and the warnings its options earn. */
export function optimizerFrom(o: TrainOptions): {
  settings: OptimizerSettings;
  warnings: string[];
} {
  const name = optimName(o.optim);
  const { kind } = OPTIM_NAMES[name];
  const args = optimArgs(kind, o.optimArgs);
  const number = (key: string, fallback: number, ok: (x: number) => boolean, expected: string) => {
    const v = args.has(key) ? Number(args.get(key)) : fallback;
    if (!Number.isFinite(v) || !ok(v))
      throw new UsageError(`train: --optim-args ${key}=${args.get(key)}: it must be ${expected}`);
    return v;
  };
  const atLeast0 = (x: number) => x >= 0;
  const common = { lr: o.lr, weightDecay: o.weightDecay };
  const settings: { [K in OptimizerKind]: () => OptimizerSettings } = {
    adamw: () => ({ kind: 'adamw', ...common, ...adamSettings(o) }),
    sgd: () => {
      const momentum = number('momentum', SGD_DEFAULTS.momentum, atLeast0, '>= 0');
      const dampening = number('dampening', SGD_DEFAULTS.dampening, () => true, 'a number');
      const nesterov = args.has('nesterov') ? booleanArg('nesterov', args.get('nesterov')!) : false;
      if (nesterov && (momentum <= 0 || dampening !== 0))
        throw new UsageError(
          'train: --optim-args nesterov=true needs a momentum above 0 and dampening 0 (as torch.optim.SGD)',
        );
      return { kind: 'sgd', ...common, momentum, dampening, nesterov };
    },
    adagrad: () => ({
      kind: 'adagrad',
      ...ADAGRAD_DEFAULTS,
      ...common,
      lrDecay: number('lr_decay', ADAGRAD_DEFAULTS.lrDecay, atLeast0, '>= 0'),
      eps: number('eps', ADAGRAD_DEFAULTS.eps, atLeast0, '>= 0'),
    }),
    rmsprop: () => ({
      kind: 'rmsprop',
      ...common,
      alpha: number('alpha', RMSPROP_DEFAULTS.alpha, atLeast0, '>= 0'),
      eps: number('eps', RMSPROP_DEFAULTS.eps, atLeast0, '>= 0'),
      momentum: number('momentum', RMSPROP_DEFAULTS.momentum, atLeast0, '>= 0'),
    }),
    adafactor: () => ({ kind: 'adafactor', ...ADAFACTOR_DEFAULTS, ...common }),
    lion: () => {
      const { beta1, beta2 } = adamSettings(o);
      return { kind: 'lion', ...common, beta1, beta2 };
    },
  };
  return { settings: settings[kind](), warnings: optimizerWarnings(o, name) };
}

/** --optim-args "k=v,k=v" (transformers' optim_args), each key one the kind reads. */
function optimArgs(kind: OptimizerKind, text: string | undefined): Map<string, string> {
  const args = new Map<string, string>();
  if (text === undefined) return args;
  const known = OPTIM_ARGS[kind];
  for (const pair of text.replace(/\s/g, '').split(',').filter(Boolean)) {
    const [key, value, ...rest] = pair.split('=');
    if (!key || value === undefined || value === '' || rest.length > 0)
      throw new UsageError(
        `train: --optim-args "${pair}": give key=value pairs, separated by commas`,
      );
    if (key === 'weight_decay')
      throw new UsageError(
        "train: --optim-args weight_decay: use --weight-decay (transformers' Trainer sets each parameter group's weight decay from weight_decay, over optim_args')",
      );
    if (!known.includes(key))
      throw new UsageError(
        `train: --optim-args ${key}: ${kind} takes ${known.length ? known.join(', ') : 'none'} here` +
          (kind === 'adamw' || kind === 'lion' ? ' (its betas: --adam-beta1, --adam-beta2)' : ''),
      );
    args.set(key, value);
  }
  return args;
}

function booleanArg(key: string, value: string): boolean {
  const v = value.toLowerCase();
  if (['true', '1', 'yes'].includes(v)) return true;
  if (['false', '0', 'no'].includes(v)) return false;
  throw new UsageError(`train: --optim-args ${key}=${value}: give true or false`);
}

/** --adam-beta1, --adam-beta2 and --adam-epsilon, checked as torch.optim.AdamW checks them. */
function adamSettings(o: TrainOptions): { beta1: number; beta2: number; eps: number } {
  for (const [name, beta] of [
    ['adam-beta1', o.adamBeta1],
    ['adam-beta2', o.adamBeta2],
  ] as const) {
    if (beta >= 1) throw new UsageError(`train: --${name} ${beta}: it must be in [0, 1)`);
  }
  if (o.adamEpsilon <= 0)
    throw new UsageError(`train: --adam-epsilon ${o.adamEpsilon}: it must be > 0`);
  return { beta1: o.adamBeta1, beta2: o.adamBeta2, eps: o.adamEpsilon };
}

function optimizerWarnings(o: TrainOptions, name: OptimName): string[] {
  const { kind } = OPTIM_NAMES[name];
  const warnings: string[] = [];
  if ('quantized' in OPTIM_NAMES[name])
    warnings.push(
      `--optim ${name}: the optimizer state stays in float32 (small for LoRA): the update is the unquantized one's, not ${name}'s`,
    );
  const given = {
    'adam-beta1': o.adamBeta1,
    'adam-beta2': o.adamBeta2,
    'adam-epsilon': o.adamEpsilon,
  };
  const ignored = (Object.keys(given) as (keyof typeof given)[]).filter(
    (flag) => given[flag] !== optimizerOptions[flag].default && !READS_ADAM[kind].includes(flag),
  );
  if (ignored.length > 0)
    warnings.push(
      `${ignored.map((f) => `--${f}`).join(', ')} ${ignored.length > 1 ? 'do' : 'does'} nothing with --optim ${name} (as in transformers)`,
    );
  return warnings;
}
