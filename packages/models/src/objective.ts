// The training objectives: what a step differentiates, and what the summed
// gradient is divided by. Supervised fine-tuning sums the token loss over
// labelled tokens; the preference objectives sum a loss per preference pair:
// DPO against a reference (dpo.ts), ORPO and SimPO without one
// (reference-free.ts). The step and evaluation see only this interface.
import { tf } from '@lorafleet/core';
import type { CausalLM, ForwardPassOptions } from './causal-lm.js';
import { type DpoSettings, countPairs, dpoLossSum, referenceLogps } from './dpo.js';
import { countLossTokens, tokenNllSum } from './loss.js';
import type { TokenBatch } from './labels.js';
import {
  type OrpoSettings,
  type SimpoSettings,
  averageLogps,
  orpoPairLosses,
  simpoPairLosses,
} from './reference-free.js';

/** The objectives trained on preference pairs, with their settings. */
export type PreferenceSettings =
  | ({ kind: 'dpo' } & DpoSettings)
  | ({ kind: 'orpo' } & OrpoSettings)
  | ({ kind: 'simpo' } & SimpoSettings);

export type PreferenceKind = PreferenceSettings['kind'];

/** Each preference objective's name as its paper writes it, for logs. */
export const PREFERENCE_NAMES: { readonly [K in PreferenceKind]: string } = {
  dpo: 'DPO',
  orpo: 'ORPO',
  simpo: 'SimPO',
};

/** What `train --objective` chose, with its settings. */
export type ObjectiveSettings = { kind: 'sft' } | PreferenceSettings;

export type ObjectiveKind = ObjectiveSettings['kind'];

export const SFT: ObjectiveSettings = { kind: 'sft' };

/** A batch's loss, ready to run under a tape; `dispose` frees what was computed beforehand. */
export interface BatchLoss {
  sum(): tf.Scalar;
  dispose(): void;
}

export interface Objective {
  readonly settings: ObjectiveSettings;
  /** What one unit of the loss is: the divisor of the summed gradient and loss. */
  readonly unit: 'tokens' | 'pairs';
  /** The units in `batch` (0: nothing to learn from it). */
  count(batch: TokenBatch): number;
  /**
   * The batch's summed loss under `options`. Work that must stay off the tape
   * (DPO's reference pass) runs here, before `sum` is called under one.
   * Preference objectives draw no dropout, as TRL's trainers (disable_dropout).
   */
  loss(model: CausalLM, batch: TokenBatch, options: ForwardPassOptions): BatchLoss;
}

const OBJECTIVES: {
  [K in ObjectiveKind]: (s: Extract<ObjectiveSettings, { kind: K }>) => Objective;
} = {
  sft: (settings) => ({
    settings,
    unit: 'tokens',
    count: countLossTokens,
    loss: (model, batch, options) => ({
      sum: () => tokenNllSum(model, batch, options),
      dispose: () => {},
    }),
  }),
  dpo: (settings) => ({
    settings,
    unit: 'pairs',
    count: countPairs,
    loss: (model, batch, options) => {
      const ref = referenceLogps(model, batch, settings); // [2B], adapters off, untaped
      return {
        // No dropout, as TRL's DPOTrainer (disable_dropout): policy and reference differ by the adapter only.
        sum: () => dpoLossSum(model, batch, ref, settings, { ...options, dropout: false }),
        dispose: () => ref.dispose(),
      };
    },
  }),
  orpo: (settings) => referenceFree(settings, (logps) => orpoPairLosses(logps, settings)),
  simpo: (settings) => referenceFree(settings, (logps) => simpoPairLosses(logps, settings)),
};

/** ORPO or SimPO: a loss per pair from the policy's length-averaged log-probabilities alone. */
function referenceFree(
  settings: ObjectiveSettings,
  pairLosses: (avgLogps: tf.Tensor1D) => tf.Tensor1D,
): Objective {
  return {
    settings,
    unit: 'pairs',
    count: countPairs,
    loss: (model, batch, options) => ({
      sum: () =>
        tf.tidy(
          () =>
            tf.sum(
              pairLosses(averageLogps(model, batch, { ...options, dropout: false })),
            ) as tf.Scalar,
        ),
      dispose: () => {},
    }),
  };
}

export function objectiveOf(settings: ObjectiveSettings): Objective {
  return (OBJECTIVES[settings.kind] as (s: ObjectiveSettings) => Objective)(settings);
}
