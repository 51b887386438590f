// The training objectives: what a step differentiates, and what the summed
// gradient is divided by. Supervised fine-tuning sums the token loss over
// labelled tokens; the preference objectives sum a loss per preference pair
// (preference.ts): DPO against a reference (dpo.ts), ORPO, SimPO and CPO
// without one (reference-free.ts); KTO sums a loss per unpaired example
// (kto.ts), given a KL estimate over the step's global batch (`shared`).
// The step sees only this interface.
import { tf } from '@lorafleet/core';
import type { CausalLM, ForwardPassOptions } from './causal-lm.js';
import { countPairs } from './pair-logps.js';
import { TOKEN_STATS, countLossTokens, tokenLossAndStats } from './loss.js';
import type { TokenBatch } from './labels.js';
import {
  type PreferenceSettings,
  PAIR_STATS,
  PREFERENCE_NAMES,
  preparePairs,
  pairStats,
} from './preference.js';
import {
  KTO_STATS,
  type KtoObjective,
  countKtoRows,
  ktoKl,
  ktoKlSums,
  ktoLoss,
  ktoReadsKl,
} from './kto.js';

export { type PreferenceKind, type PreferenceSettings, PREFERENCE_NAMES } from './preference.js';

/** What `train --objective` chose, with its settings. */
export type ObjectiveSettings = { kind: 'sft' } | PreferenceSettings | KtoObjective;

/** An objective besides the token loss, as a run carries it: on pairs, or KTO's unpaired examples. */
export type FeedbackSettings = Exclude<ObjectiveSettings, { kind: 'sft' }>;

/**
 * The objectives compared with a reference, the model with its adapter off
 * (or a frozen copy of the adapter a run starts from): DPO and KTO. What
 * trains base tensors in place would change that reference.
 */
export const hasReference = (kind: ObjectiveKind): boolean => kind === 'dpo' || kind === 'kto';

/** Each such objective's name as its paper writes it, for logs. */
export const FEEDBACK_NAMES: { readonly [K in FeedbackSettings['kind']]: string } = {
  ...PREFERENCE_NAMES,
  kto: 'KTO',
};

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
  readonly unit: LossUnit;
  /** What a batch's `stats()` holds, in order: sums that workers add. */
  readonly stats: readonly string[];
  /** The units in `batch` (0: nothing to learn from it). */
  count(batch: TokenBatch): number;
  /**
   * Sums over the step's whole global batch that the loss reads before any
   * gradient (KTO's KL estimate): `sums` of one micro-batch, off the tape,
   * `size` values; the step adds them over its micro-batches and all workers
   * and passes the totals to `loss`. Absent: the loss reads none.
   */
  readonly shared?: {
    size: number;
    sums(model: CausalLM, batch: TokenBatch): Promise<Float32Array>;
  };
  /**
   * The batch's summed loss under `options`. Work that must stay off the tape
   * (DPO's reference pass) runs here, before `sum` is called under one.
   * Preference objectives draw no dropout, as TRL's trainers (disable_dropout).
   */
  loss(
    model: CausalLM,
    batch: TokenBatch,
    options: ForwardPassOptions,
    shared?: Float32Array,
  ): BatchLoss;
}

/** What one unit of a loss is: a labelled token, a preference pair, or an unpaired example (KTO). */
export type LossUnit = 'tokens' | 'pairs' | 'examples';

/** Each objective's loss unit. */
export const lossUnitOf = (kind: ObjectiveKind): LossUnit =>
  kind === 'sft' ? 'tokens' : kind === 'kto' ? 'examples' : 'pairs';

const OBJECTIVES: {
  [K in ObjectiveKind]: (s: Extract<ObjectiveSettings, { kind: K }>) => Objective;
} = {
  sft: (settings) => ({
    settings,
    unit: 'tokens',
    stats: TOKEN_STATS,
    count: countLossTokens,
    // TRL's SFTTrainer metrics (mean_token_accuracy, entropy) as sums beside the loss.
    loss: (model, batch, options) =>
      keepingStats(
        () => tokenLossAndStats(model, batch, options),
        () => {},
      ),
  }),
  dpo: (settings) => preference(settings),
  orpo: (settings) => preference(settings),
  simpo: (settings) => preference(settings),
  cpo: (settings) => preference(settings),
  kto: (settings) => kto(settings),
};

/** KTO: a loss per example, given the KL estimate over the global batch (where its loss type reads one). */
function kto(settings: KtoObjective): Objective {
  return {
    settings,
    unit: 'examples',
    stats: KTO_STATS,
    count: countKtoRows,
    ...(ktoReadsKl(settings) ? { shared: { size: 2, sums: ktoKlSums } } : {}),
    loss: (model, batch, options, shared) => {
      if (ktoReadsKl(settings) && !shared) throw new Error("KTO needs the batch's KL sums");
      const loss = ktoLoss(model, batch, settings, shared ? ktoKl(shared) : 0);
      // No dropout, as TRL's trainers (disable_dropout).
      return keepingStats(() => loss.scores({ ...options, dropout: false }), loss.dispose);
    },
  };
}

/** A loss per preference pair (preference.ts), with TRL's reward sums as the batch's stats. */
function preference(settings: PreferenceSettings): Objective {
  return {
    settings,
    unit: 'pairs',
    stats: PAIR_STATS,
    count: countPairs,
    loss: (model, batch, options) => {
      const pairs = preparePairs(model, batch, settings); // DPO's reference pass: untaped
      // No dropout, as TRL's trainers (disable_dropout): for DPO, policy and reference differ by the adapter only.
      const score = () => {
        const scores = pairs.scores({ ...options, dropout: false });
        return { sum: tf.sum(scores.losses) as tf.Scalar, stats: pairStats(scores) };
      };
      return keepingStats(score, () => pairs.dispose());
    },
  };
}

/**
 * A BatchLoss whose `sum` runs `score` (under the caller's tape) and keeps
 * its statistics off the tape for `stats()`, read with the gradient and not
 * differentiated; `dispose` frees them and calls `release`.
 */
function keepingStats(
  score: () => { sum: tf.Scalar; stats: tf.Tensor1D },
  release: () => void,
): BatchLoss {
  let stats: tf.Tensor1D | null = null;
  return {
    sum: () =>
      tf.tidy(() => {
        const scored = score();
        stats?.dispose();
        stats = tf.keep(scored.stats);
        return scored.sum;
      }),
    stats: () => stats,
    dispose: () => {
      release();
      stats?.dispose();
    },
  };
}

export function objectiveOf(settings: ObjectiveSettings): Objective {
  return (OBJECTIVES[settings.kind] as (s: ObjectiveSettings) => Objective)(settings);
}
