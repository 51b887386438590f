// The training objectives: what a step differentiates, and what the summed
// gradient is divided by. Supervised fine-tuning sums the token loss over
// labelled tokens; the preference objectives sum a loss per preference pair
// (preference.ts): DPO against a reference (dpo.ts), ORPO, SimPO and CPO
// without one (reference-free.ts). The step sees only this interface.
import { tf } from '@lorafleet/core';
import type { CausalLM, ForwardPassOptions } from './causal-lm.js';
import { countPairs } from './dpo.js';
import { countLossTokens, tokenNllSum } from './loss.js';
import type { TokenBatch } from './labels.js';
import { type PreferenceSettings, PAIR_STATS, preparePairs, pairStats } from './preference.js';

export { type PreferenceKind, type PreferenceSettings, PREFERENCE_NAMES } from './preference.js';

/** What `train --objective` chose, with its settings. */
export type ObjectiveSettings = { kind: 'sft' } | PreferenceSettings;

export type ObjectiveKind = ObjectiveSettings['kind'];

export const SFT: ObjectiveSettings = { kind: 'sft' };

/** A batch's loss, ready to run under a tape; `dispose` frees what was computed beforehand. */
export interface BatchLoss {
  sum(): tf.Scalar;
  /**
   * After `sum`: the batch's statistics (the objective's `stats`, in order),
   * kept off the tape and freed by `dispose`; null where it has none.
   */
  stats(): tf.Tensor1D | null;
  dispose(): void;
}

export interface Objective {
  readonly settings: ObjectiveSettings;
  /** What one unit of the loss is: the divisor of the summed gradient and loss. */
  readonly unit: 'tokens' | 'pairs';
  /** What a batch's `stats()` holds, in order: sums that workers add (none for the token loss). */
  readonly stats: readonly string[];
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
    stats: [],
    count: countLossTokens,
    loss: (model, batch, options) => ({
      sum: () => tokenNllSum(model, batch, options),
      stats: () => null,
      dispose: () => {},
    }),
  }),
  dpo: (settings) => preference(settings),
  orpo: (settings) => preference(settings),
  simpo: (settings) => preference(settings),
  cpo: (settings) => preference(settings),
};

/** A loss per preference pair (preference.ts), with TRL's reward sums as the batch's stats. */
function preference(settings: PreferenceSettings): Objective {
  return {
    settings,
    unit: 'pairs',
    stats: PAIR_STATS,
    count: countPairs,
    loss: (model, batch, options) => {
      const pairs = preparePairs(model, batch, settings); // DPO's reference pass: untaped
      let stats: tf.Tensor1D | null = null;
      return {
        // No dropout, as TRL's trainers (disable_dropout): for DPO, policy and reference differ by the adapter only.
        sum: () =>
          tf.tidy(() => {
            const scores = pairs.scores({ ...options, dropout: false });
            stats?.dispose();
            stats = tf.keep(pairStats(scores)); // read with the gradient, not differentiated
            return tf.sum(scores.losses) as tf.Scalar;
          }),
        stats: () => stats,
        dispose: () => {
          pairs.dispose();
          stats?.dispose();
        },
      };
    },
  };
}

export function objectiveOf(settings: ObjectiveSettings): Objective {
  return (OBJECTIVES[settings.kind] as (s: ObjectiveSettings) => Objective)(settings);
}
