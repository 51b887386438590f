// The options that choose what is minimised (`train`) or measured (`eval`):
// the token loss, or DPO on preference pairs (models' dpo.ts).
import { DEFAULT_DPO_BETA, DPO_LOSS_TYPES, type DpoSettings } from '@lorafleet/models';
import { type OptionValues, UsageError, defineOptions } from '../args.js';

export const objectiveOptions = defineOptions({
  objective: {
    affects: 'math',
    kind: 'string',
    choices: ['sft', 'dpo'],
    default: 'sft',
    description:
      'sft: the token loss on the labelled tokens; dpo: Direct Preference Optimization (TRL\'s DPOTrainer) on {"prompt","chosen","rejected"} JSONL lines, against the base model with the adapter off',
  },
  'dpo-beta': {
    aliases: ['beta'],
    affects: 'math',
    kind: 'number',
    min: 0,
    default: DEFAULT_DPO_BETA,
    description:
      "--objective dpo: TRL's beta, how far the policy may move from the reference (> 0)",
  },
  'dpo-loss': {
    aliases: ['loss_type'],
    affects: 'math',
    kind: 'string',
    choices: DPO_LOSS_TYPES,
    default: 'sigmoid',
    description:
      "--objective dpo: TRL's loss_type: sigmoid (DPO's), ipo (squared, on length-averaged log-probabilities) or hinge",
  },
  'dpo-label-smoothing': {
    aliases: ['label_smoothing'],
    affects: 'math',
    kind: 'number',
    min: 0,
    max: 0.49,
    default: 0,
    description:
      "--objective dpo, --dpo-loss sigmoid: TRL's label_smoothing (cDPO), the share of pairs assumed mislabelled",
  },
});

/** The options that configure DPO: refused without --objective dpo. */
export const DPO_OPTIONS = ['dpo-beta', 'dpo-loss', 'dpo-label-smoothing'] as const;

export type ObjectiveValues = OptionValues<typeof objectiveOptions>;

/** "sigmoid loss, beta 0.1" (and label smoothing), for the log. */
export function describeDpo({ beta, loss = 'sigmoid', labelSmoothing = 0 }: DpoSettings): string {
  return `${loss} loss, beta ${beta}${labelSmoothing > 0 ? `, label smoothing ${labelSmoothing}` : ''}`;
}

/** --objective dpo with its settings (absent where at TRL's defaults, but beta), or null: the token loss. */
export function dpoSettingsFrom(
  o: ObjectiveValues,
  command: 'train' | 'eval',
): ({ kind: 'dpo' } & DpoSettings) | null {
  if (o.objective === 'sft') return null;
  if (!(o.dpoBeta > 0))
    throw new UsageError(`${command}: --dpo-beta must be > 0, got ${o.dpoBeta}`);
  if (o.dpoLabelSmoothing > 0 && o.dpoLoss !== 'sigmoid') {
    throw new UsageError(
      `${command}: --dpo-label-smoothing is for --dpo-loss sigmoid (TRL's cDPO), not ${o.dpoLoss}`,
    );
  }
  return {
    kind: 'dpo',
    beta: o.dpoBeta,
    ...(o.dpoLoss !== 'sigmoid' ? { loss: o.dpoLoss } : {}),
    ...(o.dpoLabelSmoothing > 0 ? { labelSmoothing: o.dpoLabelSmoothing } : {}),
  };
}
