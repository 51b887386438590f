// The settings a run trains with (or `eval` measures with) from the
// objective options (objective-options.ts): each objective's, those at TRL's
// defaults left out, every contradiction refused; and the rows it reads.
import {
  DEFAULT_CPO_ALPHA,
  DEFAULT_CPO_BETA,
  DEFAULT_DPO_BETA,
  DEFAULT_KTO_BETA,
  DEFAULT_ORPO_BETA,
  DEFAULT_SIMPO_BETA,
  DPO_LOSS_TYPES,
  F_DIVERGENCE_LOSS_TYPES,
  SMOOTHED_LOSS_TYPES,
  BATCH_SORTED_LOSS_TYPES,
  type DpoLossType,
  type DpoSettings,
  type FeedbackSettings,
  type KtoObjective,
} from '@lorafleet/models';
import { UsageError } from '../args.js';
import type { FeedbackKind, ObjectiveValues } from './objective-options.js';

/** DPO's settings from its options (absent where at TRL's defaults), each contradiction refused. */
function dpoSettings(o: ObjectiveValues, beta: number, command: string): DpoSettings {
  const refuse = (why: string) => {
    throw new UsageError(`${command}: ${why}`);
  };
  const losses = o.dpoLoss.split(',').map((t) => t.trim());
  const unknown = losses.find((t) => !(DPO_LOSS_TYPES as readonly string[]).includes(t));
  if (unknown !== undefined)
    refuse(`--dpo-loss ${JSON.stringify(unknown)} is not one of ${DPO_LOSS_TYPES.join(', ')}`);
  const types = losses as DpoLossType[];
  if (new Set(types).size < types.length) refuse(`--dpo-loss names a type twice: ${o.dpoLoss}`);
  const weights = o.dpoLossWeights?.map(Number);
  if (weights && (weights.length !== types.length || !weights.every(Number.isFinite)))
    refuse(
      `--dpo-loss-weights needs one number per --dpo-loss type (${types.length}: ${types.join(', ')}), got ${o.dpoLossWeights!.join(',')}`,
    );
  if (o.dpoLabelSmoothing > 0 && !types.some((t) => SMOOTHED_LOSS_TYPES.includes(t)))
    refuse(
      `--dpo-label-smoothing is for --dpo-loss ${SMOOTHED_LOSS_TYPES.join(', ')} (TRL's label_smoothing), not ${o.dpoLoss}`,
    );
  const plainScore = types.find((t) => !F_DIVERGENCE_LOSS_TYPES.includes(t));
  if (o.fDivergence !== 'reverse_kl' && plainScore)
    refuse(
      `--f-divergence ${o.fDivergence} is for --dpo-loss ${F_DIVERGENCE_LOSS_TYPES.join(', ')} (TRL), not ${plainScore}: its loss reads the log-ratios themselves`,
    );
  const sorted = types.find((t) => BATCH_SORTED_LOSS_TYPES.includes(t));
  if (o.useWeighting && sorted)
    refuse(
      `--use-weighting weighs each pair's loss by its own responses, and --dpo-loss ${sorted} sorts the pairs of a micro-batch: TRL refuses them together`,
    );
  if (o.fAlpha !== undefined && o.fDivergence !== 'alpha_divergence')
    refuse('--f-alpha is for --f-divergence alpha_divergence');
  if (o.discopopTau !== undefined && !(o.discopopTau > 0 && types.includes('discopop')))
    refuse(
      `--discopop-tau (> 0) is for --dpo-loss discopop, got ${o.discopopTau} with ${o.dpoLoss}`,
    );
  return {
    beta,
    ...(o.dpoLoss !== 'sigmoid' ? { loss: types.length === 1 ? types[0]! : types } : {}),
    ...(weights ? { lossWeights: weights } : {}),
    ...(o.dpoLabelSmoothing > 0 ? { labelSmoothing: o.dpoLabelSmoothing } : {}),
    ...(o.fDivergence !== 'reverse_kl' ? { fDivergence: o.fDivergence } : {}),
    ...(o.fAlpha !== undefined ? { fAlpha: o.fAlpha } : {}),
    ...(o.discopopTau !== undefined ? { discopopTau: o.discopopTau } : {}),
    ...(o.ldAlpha !== undefined ? { ldAlpha: o.ldAlpha } : {}),
    ...(o.useWeighting ? { useWeighting: true } : {}),
  };
}

const DEFAULT_BETA: { readonly [K in FeedbackKind]: number } = {
  dpo: DEFAULT_DPO_BETA,
  orpo: DEFAULT_ORPO_BETA,
  simpo: DEFAULT_SIMPO_BETA,
  cpo: DEFAULT_CPO_BETA,
  kto: DEFAULT_KTO_BETA,
};

/** Each objective's settings from the options, beta already checked. */
const SETTINGS: {
  [K in FeedbackKind]: (
    o: ObjectiveValues,
    beta: number,
    command: string,
  ) => Extract<FeedbackSettings, { kind: K }>;
} = {
  dpo: (o, beta, command) => ({ kind: 'dpo', ...dpoSettings(o, beta, command) }),
  orpo: (_o, beta) => ({ kind: 'orpo', beta }),
  simpo: (o, beta) => {
    const alpha = resolvedCpoAlpha(o);
    return {
      kind: 'simpo',
      beta,
      gamma: o.simpoGamma,
      ...(alpha ? { alpha } : {}),
      ...smoothing(o),
    };
  },
  cpo: (o, beta, command) => {
    if (o.cpoLabelSmoothing > 0 && o.cpoLoss !== 'sigmoid')
      throw new UsageError(
        `${command}: --cpo-label-smoothing is for --cpo-loss sigmoid (TRL ignores it for ${o.cpoLoss})`,
      );
    const loss = o.cpoLoss !== 'sigmoid' ? { loss: o.cpoLoss } : {};
    return { kind: 'cpo', beta, ...loss, alpha: resolvedCpoAlpha(o)!, ...smoothing(o) };
  },
  kto: (o, beta, command) => ktoSettings(o, beta, command),
};

/** KTO's settings: those away from TRL's defaults; KTO's KL needs 2 examples a batch. */
function ktoSettings(o: ObjectiveValues, beta: number, command: string): KtoObjective {
  for (const [name, w] of [
    ['desirable-weight', o.desirableWeight],
    ['undesirable-weight', o.undesirableWeight],
  ] as const)
    if (!(w > 0)) throw new UsageError(`${command}: --${name} must be > 0, got ${w}`);
  return {
    kind: 'kto',
    beta,
    ...(o.ktoLoss !== 'kto' ? { loss: o.ktoLoss } : {}),
    ...(o.desirableWeight !== 1 ? { desirableWeight: o.desirableWeight } : {}),
    ...(o.undesirableWeight !== 1 ? { undesirableWeight: o.undesirableWeight } : {}),
  };
}

/** CPO's and SimPO's label smoothing and AlphaPO's alpha, each absent at 0. */
const smoothing = (o: ObjectiveValues) => ({
  ...(o.cpoLabelSmoothing > 0 ? { labelSmoothing: o.cpoLabelSmoothing } : {}),
  ...(o.alphapoAlpha !== 0 ? { alphaPo: o.alphapoAlpha } : {}),
});

/**
 * The cpo_alpha a run trains with: given, or CPO's default; for SimPO the
 * given one, null where it is 0 (SimPO's own, recorded as runs before the
 * option); null for every other objective.
 */
export function resolvedCpoAlpha(o: ObjectiveValues): number | null {
  if (o.objective === 'cpo') return o.cpoAlpha ?? DEFAULT_CPO_ALPHA;
  return o.objective === 'simpo' && (o.cpoAlpha ?? 0) > 0 ? o.cpoAlpha! : null;
}

/** The beta a run trains with: given, or its objective's default; null for the token loss. */
export const resolvedBeta = (o: ObjectiveValues): number | null =>
  o.objective === 'sft' ? null : (o.beta ?? DEFAULT_BETA[o.objective]);

/** The preference objective or KTO with its settings (those at TRL's defaults absent), or null: the token loss. */
export function feedbackSettingsFrom(
  o: ObjectiveValues,
  command: 'train' | 'eval',
): FeedbackSettings | null {
  if (o.objective === 'sft') return null;
  const beta = resolvedBeta(o)!;
  if (!(beta > 0)) throw new UsageError(`${command}: --beta must be > 0, got ${beta}`);
  return SETTINGS[o.objective](o, beta, command);
}

/**
 * The rows an objective reads: text (none of these), preference pairs, or
 * KTO's examples with their KL completions cycled within `batchSize`.
 */
export function feedbackRows(
  s: FeedbackSettings | null,
  batchSize: number,
): { pairs?: true; kto?: { klChunk: number } } {
  if (!s) return {};
  return s.kind === 'kto' ? { kto: { klChunk: batchSize } } : { pairs: true };
}
