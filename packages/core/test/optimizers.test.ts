// Every optimizer of transformers' `optim` that core implements, stepped on
// the same gradients as its reference (test/reference/optimizers.py: torch's
// SGD, Adagrad and RMSprop, transformers' Adafactor, the Lion paper's
// algorithm), with two parameter groups as Trainer and LoRA+ make them (one
// at 4x the learning rate and without weight decay) and a schedule's
// learning rate per step: the parameters after every step, and the state
// tensors' names, shapes and values after the last, equal the reference's.
import { referenceJson } from '../src/testing/reference-python.js';
import { describe, expect, it } from 'vitest';
import {
  type OptimizerSettings,
  type SlotLayout,
  createOptimizerState,
  optimizerStep,
  stateBuffers,
  stateFloatsPerValue,
} from '../src/optim/optimizer.js';
import { Rng } from '../src/random.js';

// A LoRA A and B, a bias-like 1-D tensor and a 3-D one (Adafactor factors its last two dims).
const SHAPES = [[3, 5], [4, 3], [4], [2, 2, 3]];
const GROUPS = [
  { params: [0, 2], lrScale: 1, weight_decay: 0.05 },
  { params: [1, 3], lrScale: 4, weight_decay: 0 },
];
const LRS = [0.01, 0.02, 0.015, 0.01, 0.005];
const WEIGHT_DECAY = 0.05;

interface Case {
  settings: OptimizerSettings;
  /** The reference's constructor arguments (lr and weight decay come from the groups). */
  kwargs: Record<string, unknown>;
}

const lr = 0.01; // unused by the update (the schedule's lr is): any value
const CASES: Record<string, Case> = {
  sgd: {
    settings: {
      kind: 'sgd',
      lr,
      momentum: 0,
      dampening: 0,
      nesterov: false,
      weightDecay: WEIGHT_DECAY,
    },
    kwargs: {},
  },
  'sgd momentum 0.9, dampening 0.1': {
    settings: {
      kind: 'sgd',
      lr,
      momentum: 0.9,
      dampening: 0.1,
      nesterov: false,
      weightDecay: WEIGHT_DECAY,
    },
    kwargs: { momentum: 0.9, dampening: 0.1 },
  },
  'sgd nesterov': {
    settings: {
      kind: 'sgd',
      lr,
      momentum: 0.8,
      dampening: 0,
      nesterov: true,
      weightDecay: WEIGHT_DECAY,
    },
    kwargs: { momentum: 0.8, nesterov: true },
  },
  adagrad: {
    settings: {
      kind: 'adagrad',
      lr,
      lrDecay: 0,
      eps: 1e-10,
      weightDecay: WEIGHT_DECAY,
      initialAccumulatorValue: 0,
    },
    kwargs: {},
  },
  'adagrad lr_decay 0.1, eps 1e-6, initial accumulator 0.5': {
    settings: {
      kind: 'adagrad',
      lr,
      lrDecay: 0.1,
      eps: 1e-6,
      weightDecay: WEIGHT_DECAY,
      initialAccumulatorValue: 0.5,
    },
    kwargs: { lr_decay: 0.1, eps: 1e-6, initial_accumulator_value: 0.5 },
  },
  rmsprop: {
    settings: {
      kind: 'rmsprop',
      lr,
      alpha: 0.99,
      eps: 1e-8,
      momentum: 0,
      weightDecay: WEIGHT_DECAY,
    },
    kwargs: {},
  },
  'rmsprop momentum 0.9, alpha 0.9, eps 1e-6': {
    settings: {
      kind: 'rmsprop',
      lr,
      alpha: 0.9,
      eps: 1e-6,
      momentum: 0.9,
      weightDecay: WEIGHT_DECAY,
    },
    kwargs: { momentum: 0.9, alpha: 0.9, eps: 1e-6 },
  },
  adafactor: {
    settings: {
      kind: 'adafactor',
      lr,
      eps1: 1e-30,
      clipThreshold: 1,
      decayRate: -0.8,
      beta1: null,
      weightDecay: WEIGHT_DECAY,
    },
    kwargs: {},
  },
  'adafactor beta1 0.9, clip 0.5, decay_rate -0.5': {
    settings: {
      kind: 'adafactor',
      lr,
      eps1: 1e-30,
      clipThreshold: 0.5,
      decayRate: -0.5,
      beta1: 0.9,
      weightDecay: WEIGHT_DECAY,
    },
    kwargs: { beta1: 0.9, clip_threshold: 0.5, decay_rate: -0.5 },
  },
  lion: {
    settings: { kind: 'lion', lr, beta1: 0.9, beta2: 0.999, weightDecay: WEIGHT_DECAY },
    kwargs: { betas: [0.9, 0.999] },
  },
  'lion betas 0.95/0.98': {
    settings: { kind: 'lion', lr, beta1: 0.95, beta2: 0.98, weightDecay: WEIGHT_DECAY },
    kwargs: { betas: [0.95, 0.98] },
  },
};

const layout: SlotLayout[] = [];
for (const shape of SHAPES) {
  const offset = layout.length ? layout.at(-1)!.offset + layout.at(-1)!.size : 0;
  layout.push({ offset, size: shape.reduce((a, b) => a * b, 1), shape });
}
const size = layout.at(-1)!.offset + layout.at(-1)!.size;
const rng = new Rng(7);
const normal = () => rng.normal();
const initial = Float32Array.from({ length: size }, normal);
// Gradients of several scales, one step with a zero entry (sign(0), Adagrad's first sum).
const grads = LRS.map((_, t) =>
  Float32Array.from({ length: size }, (_, i) =>
    t === 2 && i === 0 ? 0 : normal() * 10 ** ((t % 3) - 1),
  ),
);
const groupOf = (slot: number) => GROUPS.findIndex((g) => g.params.includes(slot));
const lrScales = new Float64Array(size);
const decayScales = new Float64Array(size);
layout.forEach((slot, k) => {
  const g = GROUPS[groupOf(k)]!;
  lrScales.fill(g.lrScale, slot.offset, slot.offset + slot.size);
  decayScales.fill(g.weight_decay / WEIGHT_DECAY, slot.offset, slot.offset + slot.size);
});

interface Reference {
  params: number[][];
  state: Record<string, { shape: number[]; values: number[] }>[];
}

const slices = (values: Float32Array) =>
  layout.map((slot) => Array.from(values.subarray(slot.offset, slot.offset + slot.size)));

const reference = referenceJson<{ cases: Reference[] }>(
  'optimizers',
  Object.values(CASES).map(({ settings, kwargs }) => ({
    kind: settings.kind,
    kwargs,
    params: SHAPES.map((shape, k) => ({ shape, values: slices(initial)[k] })),
    groups: GROUPS,
    lrs: LRS,
    grads: grads.map(slices),
  })),
).cases;

describe('optimizers against torch and transformers', () => {
  it.each(Object.keys(CASES).map((name, i) => [name, i] as const))(
    '%s: parameters after every step and the state after the last',
    (_, i) => {
      const { settings } = Object.values(CASES)[i]!;
      const ref = reference[i]!;
      const params = initial.slice();
      const state = createOptimizerState(settings, layout);
      LRS.forEach((lr, t) => {
        optimizerStep(params, grads[t]!, state, settings, { lr, lrScales, decayScales, layout });
        expect(state.step).toBe(t + 1);
        params.forEach((p, j) => {
          const want = ref.params[t]![j]!;
          expect(Math.abs(p - want), `step ${t + 1}, element ${j}`).toBeLessThan(
            2e-6 * Math.max(1, Math.abs(want)),
          );
        });
      });
      expect(Math.max(...params.map((p, j) => Math.abs(p - initial[j]!)))).toBeGreaterThan(1e-3);
      // The state: torch's names, each slot's shape, its values.
      const buffers = stateBuffers(settings, layout);
      layout.forEach((_, k) => {
        const ours = Object.fromEntries(
          buffers
            .filter((b) => b.slots[k]!.shape)
            .map((b) => {
              const { offset, shape } = b.slots[k]!;
              const length = shape!.reduce((a, c) => a * c, 1);
              return [
                b.name,
                {
                  shape: [...shape!],
                  values: state.buffers[b.name]!.subarray(offset, offset + length),
                },
              ];
            }),
        );
        expect(Object.keys(ours).sort(), `slot ${k}`).toEqual(Object.keys(ref.state[k]!).sort());
        // The memory estimate's state floats per value: what torch keeps for this slot.
        const torchFloats = Object.values(ref.state[k]!).reduce((n, s) => n + s.values.length, 0);
        expect(stateFloatsPerValue(settings, SHAPES[k]!), `slot ${k}`).toBeCloseTo(
          torchFloats / layout[k]!.size,
          12,
        );
        for (const [name, { shape, values }] of Object.entries(ref.state[k]!)) {
          expect(ours[name]!.shape, `${name} of slot ${k}`).toEqual(shape);
          values.forEach((v, j) =>
            expect(Math.abs(ours[name]!.values[j]! - v), `${name}[${j}] of slot ${k}`).toBeLessThan(
              2e-6 * Math.max(1, Math.abs(v)),
            ),
          );
        }
      });
    },
  );
});
