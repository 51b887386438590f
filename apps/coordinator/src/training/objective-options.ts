// The options that choose what is minimised (`train`) or measured (`eval`):
// the token loss, or DPO on preference pairs (models' dpo.ts).
import { DEFAULT_DPO_BETA } from '@lorafleet/models';
import { type OptionValues, UsageError, defineOptions } from '../args.js';

export const objectiveOptions = defineOptions({
  objective: {
    affects: 'math',
    kind: 'string',
    choices: ['sft', 'dpo'],
    default: 'sft',
    description:
      'sft: the token loss on the labelled tokens; dpo: Direct Preference Optimization (TRL\'s DPOTrainer, sigmoid loss) on {"prompt","chosen","rejected"} JSONL lines, against the base model with the adapter off',
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
});

export type ObjectiveValues = OptionValues<typeof objectiveOptions>;

/** --objective dpo with its beta, or null: the token loss. */
export function dpoSettingsFrom(
  o: ObjectiveValues,
  command: 'train' | 'eval',
): { kind: 'dpo'; beta: number } | null {
  if (o.objective === 'sft') return null;
  if (!(o.dpoBeta > 0))
    throw new UsageError(`${command}: --dpo-beta must be > 0, got ${o.dpoBeta}`);
  return { kind: 'dpo', beta: o.dpoBeta };
}
