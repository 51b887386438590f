// The optimizers of transformers' `optim`, behind one contract: each keeps
// its state as torch does (its names, a tensor per parameter, of the shape
// torch gives it) and updates one fused Float32Array of parameters, as
// adamw.ts does. A kind is one entry of OPTIMIZERS; adding one is a file
// with its options and rule, and a line here (docs/contributing.md).
import { type AdamWOptions, type AdamWState, ADAMW_DEFAULTS, adamWStep } from './adamw.js';
import { ADAFACTOR, type AdafactorOptions } from './adafactor.js';
import { ADAGRAD, type AdagradOptions } from './adagrad.js';
import { LION, type LionOptions } from './lion.js';
import { RMSPROP, type RmspropOptions } from './rmsprop.js';
import { SGD, type SgdOptions } from './sgd.js';
import type { OptimizerRule, OptimizerState, SlotLayout, UpdateContext } from './rule.js';

export type { OptimizerRule, OptimizerState, SlotLayout, UpdateContext } from './rule.js';

const ADAMW: OptimizerRule<AdamWOptions> = {
  title: 'AdamW',
  stateShapes: (_, shape) => ({ exp_avg: shape, exp_avg_sq: shape }),
  update(params, grads, state, options, { lr, lrScales, decayScales }) {
    const view: AdamWState = {
      step: state.step - 1, // adamWStep counts the step itself
      m: state.buffers.exp_avg!,
      v: state.buffers.exp_avg_sq!,
    };
    adamWStep(params, grads, view, options, lr, lrScales, decayScales);
  },
};

/** Each kind's options (lr and weightDecay in all: the Trainer's group settings). */
export interface OptimizerOptionsOf {
  adamw: AdamWOptions;
  sgd: SgdOptions;
  adagrad: AdagradOptions;
  rmsprop: RmspropOptions;
  adafactor: AdafactorOptions;
  lion: LionOptions;
}

export type OptimizerKind = keyof OptimizerOptionsOf;

/** An optimizer and its settings, as the run config carries them. */
export type OptimizerSettings = {
  [K in OptimizerKind]: { kind: K } & OptimizerOptionsOf[K];
}[OptimizerKind];

export const OPTIMIZERS: { [K in OptimizerKind]: OptimizerRule<OptimizerOptionsOf[K]> } = {
  adamw: ADAMW,
  sgd: SGD,
  adagrad: ADAGRAD,
  rmsprop: RMSPROP,
  adafactor: ADAFACTOR,
  lion: LION,
};

export const OPTIMIZER_KINDS = Object.keys(OPTIMIZERS) as OptimizerKind[];

/** AdamW with torch's defaults (a run config without `kind` trains AdamW with its own settings: packages/worker run-config-optimizer.ts). */
export const DEFAULT_OPTIMIZER: OptimizerSettings = { kind: 'adamw', ...ADAMW_DEFAULTS };

const ruleOf = (s: OptimizerSettings) =>
  OPTIMIZERS[s.kind] as OptimizerRule<OptimizerOptionsOf[OptimizerKind]>;

/** Where each slot's tensor of one state name lies in its fused buffer (shape null: none). */
export interface StateBuffer {
  name: string;
  length: number;
  slots: { offset: number; shape: readonly number[] | null }[];
}

/** The state buffers of `settings` over `layout`, in the order torch names them. */
export function stateBuffers(
  settings: OptimizerSettings,
  layout: readonly SlotLayout[],
): StateBuffer[] {
  const rule = ruleOf(settings);
  const perSlot = layout.map((slot) => rule.stateShapes(settings, slot.shape));
  // A name no slot keeps (SGD without momentum's momentum_buffer) is no buffer.
  const names = [...new Set(perSlot.flatMap((shapes) => Object.keys(shapes)))].filter((name) =>
    perSlot.some((shapes) => shapes[name]),
  );
  return names.map((name) => {
    let length = 0;
    const slots = perSlot.map((shapes) => {
      const shape = shapes[name] ?? null;
      const offset = length;
      length += shape ? shape.reduce((a, b) => a * b, 1) : 0;
      return { offset, shape };
    });
    return { name, length, slots };
  });
}

export function createOptimizerState(
  settings: OptimizerSettings,
  layout: readonly SlotLayout[],
): OptimizerState {
  const buffers: Record<string, Float32Array> = {};
  for (const b of stateBuffers(settings, layout)) buffers[b.name] = new Float32Array(b.length);
  if (settings.kind === 'adagrad' && settings.initialAccumulatorValue !== 0)
    buffers.sum!.fill(settings.initialAccumulatorValue);
  return { step: 0, buffers };
}

export function cloneOptimizerState(s: OptimizerState): OptimizerState {
  const buffers: Record<string, Float32Array> = {};
  for (const [name, b] of Object.entries(s.buffers)) buffers[name] = b.slice();
  return { step: s.step, buffers };
}

/**
 * One step of the run's optimizer in place on `params` and `state` (the step
 * count included); `lr` is the schedule's. The options' own `lr` is unused.
 */
export function optimizerStep(
  params: Float32Array,
  grads: Float32Array,
  state: OptimizerState,
  settings: OptimizerSettings,
  context: UpdateContext,
): void {
  const n = params.length;
  if (grads.length !== n)
    throw new Error(`${ruleOf(settings).title}: ${n} parameters, ${grads.length} gradients`);
  for (const b of stateBuffers(settings, context.layout)) {
    if (state.buffers[b.name]?.length !== b.length)
      throw new Error(
        `${ruleOf(settings).title}: state "${b.name}" holds ${state.buffers[b.name]?.length ?? 0} values, expected ${b.length}`,
      );
  }
  for (const [what, scales] of [
    ['learning-rate', context.lrScales],
    ['weight-decay', context.decayScales],
  ] as const) {
    if (scales && scales.length !== n)
      throw new Error(
        `${ruleOf(settings).title}: ${scales.length} ${what} factors for ${n} parameters`,
      );
  }
  state.step++;
  ruleOf(settings).update(params, grads, state, settings, context);
}

/**
 * Floats of optimizer state per value of a parameter of `shape` (AdamW's 2;
 * SGD without momentum's 0; Adafactor's factored (rows + columns) / values):
 * what a fully fine-tuned weight costs beside itself and its gradient.
 */
export function stateFloatsPerValue(settings: OptimizerSettings, shape: readonly number[]): number {
  const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
  const shapes = Object.values(ruleOf(settings).stateShapes(settings, shape));
  return shapes.reduce((sum: number, s) => sum + (s ? size(s) : 0), 0) / size(shape);
}

/** How logs name the run's optimizer. */
export const optimizerTitle = (settings: OptimizerSettings) => ruleOf(settings).title;
