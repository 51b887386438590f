// A one-module adapter and a trainer state for checkpoint tests that need no
// training run: module "m" with r = 2, in = 3, out = 4.
import { type PeftAdapter, TrainableParameters, tf } from '@lorafleet/core';
import type { TrainerState } from '../src/training/checkpoint.js';

const a = Float32Array.from({ length: 6 }, (_, i) => i / 7);
const b = Float32Array.from({ length: 8 }, (_, i) => -i / 9);

export const ADAPTER: PeftAdapter = {
  config: {
    r: 2,
    loraAlpha: 4,
    loraDropout: 0,
    targetModules: ['m'],
    fanInFanOut: false,
    useRslora: false,
    bias: 'none',
    initLoraWeights: true,
    baseModelNameOrPath: null,
    taskType: 'CAUSAL_LM',
  },
  modules: new Map([['m', { a, b, r: 2, inFeatures: 3, outFeatures: 4 }]]),
};

/** The trainer state of a checkpoint at `step` of a 20-step run. */
export function trainerState(step: number): TrainerState {
  return {
    formatVersion: 1,
    step,
    epoch: step / 10,
    sampler: { epoch: 0, cursor: step * 2 },
    seed: 7,
    configHash: 'x',
    config: {},
    totalSteps: 20,
    tokensSeen: step * 100,
    rng: { kind: 'derived', seed: 7, step },
  };
}

/** The adapter's A and B as trainable variables (on the active backend). */
export function fixtureParameters(): TrainableParameters {
  return new TrainableParameters([
    ['m.lora_A', tf.variable(tf.tensor2d(a, [2, 3]))],
    ['m.lora_B', tf.variable(tf.tensor2d(b, [4, 2]))],
  ]);
}
