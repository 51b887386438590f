// --schedule (transformers' lr_scheduler_type) and --lr-scheduler-kwargs
// (its lr_scheduler_kwargs, a JSON object): each kind's keywords, checked and
// turned into the LrSchedule fields that core's lrFactor reads.
import {
  type LrSchedule,
  NEEDS_TOTAL,
  PLATEAU_DEFAULTS,
  type PlateauSettings,
  type ScheduleKind,
  type WsdShape,
} from '@lorafleet/core';
import { UsageError } from '../args.js';

type Kwargs = Record<string, unknown>;

/** What a kind reads from the keywords, given the run's LR. */
type Reader = (k: KwargReader, lr: number) => Partial<LrSchedule>;

class KwargReader {
  constructor(
    readonly kind: ScheduleKind,
    private readonly kwargs: Kwargs,
  ) {}

  number(key: string, ok: (x: number) => boolean, expected: string): number | undefined {
    const value = this.kwargs[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !ok(value))
      throw new UsageError(
        `train: --lr-scheduler-kwargs ${key} for --schedule ${this.kind} must be ${expected}, got ${JSON.stringify(value)}`,
      );
    return value;
  }

  choice<T extends string>(key: string, values: readonly T[]): T | undefined {
    const value = this.kwargs[key];
    if (value === undefined) return undefined;
    if (!values.includes(value as T))
      throw new UsageError(
        `train: --lr-scheduler-kwargs ${key} must be ${values.map((v) => `"${v}"`).join(' or ')}, got ${JSON.stringify(value)}`,
      );
    return value as T;
  }

  shape(key: string): WsdShape | undefined {
    const value = this.kwargs[key];
    if (value === undefined) return undefined;
    if (value !== 'linear' && value !== 'cosine' && value !== '1-sqrt')
      throw new UsageError(
        `train: --lr-scheduler-kwargs ${key} must be "linear", "cosine" or "1-sqrt", got ${JSON.stringify(value)}`,
      );
    return value;
  }
}

const positive = (x: number) => x > 0;
const count = (x: number) => Number.isInteger(x) && x >= 0;
const share = (x: number) => x >= 0 && x <= 1;
const defined = <T extends object>(o: Partial<T>) =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;

/** cosine_with_min_lr's and cosine_warmup_with_min_lr's floor (one of min_lr and min_lr_rate) and waves. */
function cosineFloor(k: KwargReader, lr: number): Partial<LrSchedule> {
  const rate = k.number('min_lr_rate', share, 'in [0, 1]');
  const min = k.number('min_lr', (x) => x >= 0 && x <= lr, `in [0, --lr ${lr}]`);
  if ((rate === undefined) === (min === undefined))
    throw new UsageError(
      `train: --schedule ${k.kind} needs one of min_lr and min_lr_rate in --lr-scheduler-kwargs, e.g. '{"min_lr_rate": 0.1}'`,
    );
  return { numCycles: k.number('num_cycles', positive, '> 0'), minRatio: rate ?? min! / lr };
}

/** Each kind's keywords (transformers' names) and how they read. */
const KWARGS: Record<ScheduleKind, { keys: string[]; read: Reader }> = {
  constant: { keys: [], read: () => ({}) },
  constant_with_warmup: { keys: [], read: () => ({}) },
  linear: { keys: [], read: () => ({}) },
  cosine: {
    keys: ['num_cycles'],
    read: (k) => ({ numCycles: k.number('num_cycles', positive, '> 0') }),
  },
  cosine_with_min_lr: { keys: ['num_cycles', 'min_lr', 'min_lr_rate'], read: cosineFloor },
  cosine_warmup_with_min_lr: {
    keys: ['num_cycles', 'min_lr', 'min_lr_rate', 'warmup_lr_rate'],
    read: (k, lr) => ({
      ...cosineFloor(k, lr),
      warmupLrRate: k.number('warmup_lr_rate', share, 'in [0, 1]'),
    }),
  },
  cosine_with_restarts: {
    keys: ['num_cycles'],
    read: (k) => ({
      numCycles: k.number('num_cycles', (x) => Number.isInteger(x) && x > 0, 'a whole number > 0'),
    }),
  },
  polynomial: {
    keys: ['lr_end', 'power'],
    read: (k, lr) => ({
      lrEndRatio: (k.number('lr_end', (x) => x >= 0 && x < lr, `in [0, --lr ${lr})`) ?? 1e-7) / lr,
      power: k.number('power', positive, '> 0'),
    }),
  },
  inverse_sqrt: {
    keys: ['timescale'],
    read: (k) => ({
      timescale: k.number('timescale', (x) => count(x) && x > 0, 'a whole number > 0'),
    }),
  },
  warmup_stable_decay: {
    keys: [
      'num_decay_steps',
      'num_stable_steps',
      'warmup_type',
      'decay_type',
      'min_lr_ratio',
      'num_cycles',
    ],
    read: (k) => {
      const decaySteps = k.number('num_decay_steps', count, 'a whole number >= 0');
      if (decaySteps === undefined)
        throw new UsageError(
          'train: --schedule warmup_stable_decay needs num_decay_steps in --lr-scheduler-kwargs, e.g. \'{"num_decay_steps": 100}\'',
        );
      return {
        decaySteps,
        stableSteps: k.number('num_stable_steps', count, 'a whole number >= 0'),
        warmupType: k.shape('warmup_type'),
        decayType: k.shape('decay_type'),
        minRatio: k.number('min_lr_ratio', share, 'in [0, 1]'),
        numCycles: k.number('num_cycles', positive, '> 0'),
      };
    },
  },
  // torch's ReduceLROnPlateau arguments (min_lr one number for every parameter).
  reduce_lr_on_plateau: {
    keys: [
      'mode',
      'factor',
      'patience',
      'threshold',
      'threshold_mode',
      'cooldown',
      'min_lr',
      'eps',
    ],
    read: (k) => {
      const nonNegative = (x: number) => x >= 0;
      const given = defined({
        mode: k.choice('mode', ['min', 'max'] as const),
        factor: k.number('factor', (x) => x >= 0 && x < 1, 'in [0, 1)'),
        patience: k.number('patience', count, 'a whole number >= 0'),
        threshold: k.number('threshold', nonNegative, '>= 0'),
        thresholdMode: k.choice('threshold_mode', ['rel', 'abs'] as const),
        cooldown: k.number('cooldown', count, 'a whole number >= 0'),
        minLr: k.number('min_lr', nonNegative, '>= 0'),
        eps: k.number('eps', nonNegative, '>= 0'),
      } as Partial<PlateauSettings>);
      return { plateau: { ...PLATEAU_DEFAULTS, ...given } };
    },
  },
};

/** The run's LrSchedule from --schedule, --lr-scheduler-kwargs (JSON text) and the resolved steps. */
export function scheduleFrom(
  kind: ScheduleKind,
  kwargsText: string | undefined,
  run: { warmupSteps: number; totalSteps: number; lr: number },
): LrSchedule {
  let kwargs: Kwargs = {};
  if (kwargsText !== undefined) {
    try {
      kwargs = JSON.parse(kwargsText) as Kwargs;
    } catch (error) {
      throw new UsageError(`train: --lr-scheduler-kwargs is not JSON: ${(error as Error).message}`);
    }
    if (typeof kwargs !== 'object' || kwargs === null || Array.isArray(kwargs))
      throw new UsageError(`train: --lr-scheduler-kwargs must be a JSON object, got ${kwargsText}`);
  }
  const { keys, read } = KWARGS[kind];
  const unknown = Object.keys(kwargs).filter((key) => !keys.includes(key));
  if (unknown.length > 0)
    throw new UsageError(
      `train: --lr-scheduler-kwargs ${unknown.join(', ')}: --schedule ${kind} reads ` +
        (keys.length ? keys.join(', ') : 'none'),
    );
  const fields = defined(read(new KwargReader(kind, kwargs), run.lr));
  const total = !NEEDS_TOTAL.has(kind);
  return {
    kind,
    warmupSteps: run.warmupSteps,
    ...(total ? {} : { totalSteps: run.totalSteps }),
    ...fields,
  };
}
