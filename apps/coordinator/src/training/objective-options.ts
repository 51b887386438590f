// The options that choose what is minimised (`train`) or measured (`eval`):
// the token loss, a preference objective on preference pairs (models'
// objective.ts: DPO against a reference, ORPO, SimPO and CPO without one), or
// KTO on unpaired examples; which objective each configures. The settings
// made of them: objective-settings.ts; their words: objective-describe.ts.
import {
  CPO_LOSS_TYPES,
  DEFAULT_CPO_ALPHA,
  DEFAULT_CPO_BETA,
  DEFAULT_DISCOPOP_TAU,
  DEFAULT_DPO_BETA,
  DEFAULT_F_ALPHA,
  DEFAULT_ORPO_BETA,
  DEFAULT_SIMPO_BETA,
  DEFAULT_SIMPO_GAMMA,
  DPO_LOSS_TYPES,
  F_DIVERGENCES,
  F_DIVERGENCE_LOSS_TYPES,
  KTO_LOSS_TYPES,
  type FeedbackSettings,
} from '@lorafleet/models';
import { type OptionValues, UsageError, defineOptions } from '../args.js';
import { COLUMN_OPTIONS } from './data-options.js';

export const objectiveOptions = defineOptions({
  objective: {
    affects: 'math',
    kind: 'string',
    choices: ['sft', 'dpo', 'orpo', 'simpo', 'cpo', 'kto'],
    default: 'sft',
    description:
      'sft: the token loss on the labelled tokens. On {"prompt","chosen","rejected"} JSONL lines (preference pairs): ' +
      "dpo, Direct Preference Optimization (TRL's DPOTrainer) against the base model with the adapter off; " +
      "orpo, ORPO (TRL's ORPOTrainer): the NLL of the chosen prompt and response plus an odds-ratio loss, no reference; " +
      "simpo, SimPO (TRL's CPOTrainer with loss_type simpo, cpo_alpha 0): length-averaged rewards with a margin, no reference; " +
      "cpo, CPO (TRL's CPOTrainer): DPO's loss without a reference plus the chosen response's NLL. " +
      'On {"prompt","completion","label"} lines (unpaired feedback): ' +
      "kto, KTO (TRL's KTOTrainer) against the base model with the adapter off",
  },
  beta: {
    aliases: ['dpo-beta'],
    affects: 'math',
    kind: 'number',
    min: 0,
    description:
      "--objective dpo, orpo, simpo, cpo or kto: TRL's beta (> 0): for dpo and kto how far the policy may move from the reference " +
      `(default ${DEFAULT_DPO_BETA}), for orpo the odds-ratio term's weight (default ${DEFAULT_ORPO_BETA}), ` +
      `for simpo the reward scale (default ${DEFAULT_SIMPO_BETA}, the SimPO paper's), for cpo its temperature (default ${DEFAULT_CPO_BETA})`,
  },
  'dpo-loss': {
    aliases: ['loss_type'],
    affects: 'math',
    kind: 'string',
    value: 'TYPE[,TYPE...]',
    default: 'sigmoid',
    description:
      `--objective dpo: TRL's loss_type (${DPO_LOSS_TYPES.join(', ')}): sigmoid (DPO's), ipo (squared, on length-averaged log-probabilities), ` +
      "sigmoid_norm (averaged like ipo), discopop (DiscoPOP), sft (the chosen response's NLL), aot and aot_unpaired (AOT: the micro-batch's margins sorted) and the others of docs/preference-tuning.md; " +
      'several, comma-separated, are summed with --dpo-loss-weights (MPO: sigmoid,bco_pair,sft)',
  },
  'dpo-loss-weights': {
    aliases: ['loss_weights'],
    affects: 'math',
    kind: 'list',
    value: 'W[,W...]',
    description:
      "--objective dpo with several --dpo-loss types: TRL's loss_weights, one number per type (default: 1 each)",
  },
  'dpo-label-smoothing': {
    aliases: ['label_smoothing'],
    affects: 'math',
    kind: 'number',
    min: 0,
    max: 0.49,
    default: 0,
    description:
      "--objective dpo, --dpo-loss sigmoid, robust or exo_pair: TRL's label_smoothing (cDPO), the share of pairs assumed mislabelled (exo_pair: 0 reads as 1e-3)",
  },
  'f-divergence': {
    aliases: ['f_divergence_type'],
    affects: 'math',
    kind: 'string',
    choices: F_DIVERGENCES,
    default: 'reverse_kl',
    description:
      `--objective dpo: TRL's f_divergence_type (f-DPO): reverse_kl (DPO's), forward_kl, js_divergence or alpha_divergence; ` +
      `with --dpo-loss ${F_DIVERGENCE_LOSS_TYPES.join(', ')} only`,
  },
  'f-alpha': {
    aliases: ['f_alpha_divergence_coef'],
    affects: 'math',
    kind: 'number',
    description: `--f-divergence alpha_divergence: TRL's f_alpha_divergence_coef (default ${DEFAULT_F_ALPHA})`,
  },
  'discopop-tau': {
    aliases: ['discopop_tau'],
    affects: 'math',
    kind: 'number',
    description: `--dpo-loss discopop: TRL's discopop_tau (> 0), DiscoPOP's temperature (default ${DEFAULT_DISCOPOP_TAU})`,
  },
  'ld-alpha': {
    aliases: ['ld_alpha'],
    affects: 'math',
    kind: 'number',
    min: 0,
    max: 1,
    description:
      "--objective dpo: TRL's ld_alpha (LD-DPO): the weight, in [0, 1], of a pair's response tokens past the shorter response's length (default: off, plain DPO)",
  },
  'use-weighting': {
    aliases: ['use_weighting'],
    affects: 'math',
    kind: 'boolean',
    description:
      "--objective dpo: TRL's use_weighting (WPO): each pair's loss times the policy's length-normalised probabilities of its two responses",
  },
  'simpo-gamma': {
    aliases: ['simpo_gamma'],
    affects: 'math',
    kind: 'number',
    min: 0,
    default: DEFAULT_SIMPO_GAMMA,
    description:
      "--objective simpo: the target reward margin (TRL's simpo_gamma; the default is the SimPO paper's gamma / beta of 0.5 at beta 2)",
  },
  'cpo-loss': {
    affects: 'math',
    kind: 'string',
    choices: CPO_LOSS_TYPES,
    default: 'sigmoid',
    description:
      "--objective cpo: TRL's loss_type: sigmoid (CPO's), hinge, or ipo (on length-averaged log-probabilities); SimPO's is --objective simpo",
  },
  'cpo-alpha': {
    aliases: ['cpo_alpha'],
    affects: 'math',
    kind: 'number',
    min: 0,
    description:
      `--objective cpo or simpo: TRL's cpo_alpha, the weight of the chosen response's NLL (cpo: default ${DEFAULT_CPO_ALPHA}; ` +
      "simpo: default 0, SimPO's; above 0 it is TRL's CPO-SimPO)",
  },
  'cpo-label-smoothing': {
    affects: 'math',
    kind: 'number',
    min: 0,
    max: 0.49,
    default: 0,
    description:
      "--objective cpo (sigmoid loss) or simpo: TRL's CPOConfig.label_smoothing, the share of pairs assumed mislabelled",
  },
  'alphapo-alpha': {
    affects: 'math',
    kind: 'number',
    default: 0,
    description:
      "--objective simpo or cpo: TRL's CPOConfig.alpha, AlphaPO's reward shape (1 - p^-alpha) / alpha in place of log p (0: off; TRL's loss_type alphapo is --objective simpo with it)",
  },
  'kto-loss': {
    affects: 'math',
    kind: 'string',
    choices: KTO_LOSS_TYPES,
    default: 'kto',
    description:
      "--objective kto: TRL's KTOConfig.loss_type: kto (KTO's, against the KL estimate) or apo_zero_unpaired (APO-zero, no KL)",
  },
  'desirable-weight': {
    aliases: ['desirable_weight'],
    affects: 'math',
    kind: 'number',
    default: 1,
    description:
      "--objective kto: TRL's desirable_weight (> 0), the weight of the desirable examples' losses (balance them against the undesirable ones)",
  },
  'undesirable-weight': {
    aliases: ['undesirable_weight'],
    affects: 'math',
    kind: 'number',
    default: 1,
    description:
      "--objective kto: TRL's undesirable_weight (> 0), the weight of the undesirable examples' losses",
  },
});

export type ObjectiveValues = OptionValues<typeof objectiveOptions>;

/** Each objective option and the objectives it configures: refused with any other. */
export const OBJECTIVE_OPTIONS: Readonly<Record<string, readonly FeedbackKind[]>> = {
  beta: ['dpo', 'orpo', 'simpo', 'cpo', 'kto'],
  'dpo-loss': ['dpo'],
  'dpo-loss-weights': ['dpo'],
  'dpo-label-smoothing': ['dpo'],
  'f-divergence': ['dpo'],
  'f-alpha': ['dpo'],
  'discopop-tau': ['dpo'],
  'ld-alpha': ['dpo'],
  'use-weighting': ['dpo'],
  'simpo-gamma': ['simpo'],
  'cpo-loss': ['cpo'],
  'cpo-alpha': ['cpo', 'simpo'],
  'cpo-label-smoothing': ['cpo', 'simpo'],
  'alphapo-alpha': ['simpo', 'cpo'],
  'kto-loss': ['kto'],
  'desirable-weight': ['kto'],
  'undesirable-weight': ['kto'],
};

/** The objectives besides the token loss. */
export type FeedbackKind = FeedbackSettings['kind'];

/** An option's counterpart for another objective (TRL's loss_type is --dpo-loss or --cpo-loss). */
const COUNTERPARTS: Readonly<Record<string, Partial<Record<FeedbackKind, string>>>> = {
  'dpo-loss': { cpo: 'cpo-loss', kto: 'kto-loss' },
  'cpo-loss': { dpo: 'dpo-loss', kto: 'kto-loss' },
  'kto-loss': { dpo: 'dpo-loss', cpo: 'cpo-loss' },
  'dpo-label-smoothing': { cpo: 'cpo-label-smoothing', simpo: 'cpo-label-smoothing' },
  'cpo-label-smoothing': { dpo: 'dpo-label-smoothing' },
};

/** Data options of the token loss alone, and why the other objectives take none. */
const TOKEN_LOSS_OPTIONS: Readonly<Record<string, string>> = {
  'completion-only-loss': 'scores the responses only, whatever the rows hold',
  'assistant-only-loss': 'scores the responses only, whatever the rows hold',
  'truncation-mode':
    "keeps each sequence's start, as TRL's preference trainers (keep_end is deprecated there)",
  'packing-strategy': 'keeps each pair or example in a row of its own',
  'padding-free': 'keeps each pair or example in a row of its own',
  ...Object.fromEntries(
    COLUMN_OPTIONS.map((name) => [
      name,
      "reads JSONL rows by their own keys (TRL's formats: docs/preference-tuning.md)",
    ]),
  ),
};

/**
 * Refuses an objective option given without an objective it configures, and
 * the token loss's data options with another objective (either would change
 * nothing).
 */
export function checkObjectiveOptions(
  o: ObjectiveValues,
  given: ReadonlySet<string>,
  command: 'train' | 'eval',
): void {
  const tokenLossOnly = Object.keys(TOKEN_LOSS_OPTIONS).find((name) => given.has(name));
  if (o.objective !== 'sft' && tokenLossOnly !== undefined) {
    throw new UsageError(
      `${command}: --${tokenLossOnly} configures the token loss (--objective sft); --objective ${o.objective} ${TOKEN_LOSS_OPTIONS[tokenLossOnly]}`,
    );
  }
  for (const [name, objectives] of Object.entries(OBJECTIVE_OPTIONS)) {
    if (!given.has(name) || (objectives as readonly string[]).includes(o.objective)) continue;
    const which =
      objectives.length === 1
        ? objectives[0]
        : `${objectives.slice(0, -1).join(', ')} or ${objectives.at(-1)}`;
    const counterpart = o.objective === 'sft' ? undefined : COUNTERPARTS[name]?.[o.objective];
    const fix = counterpart
      ? `for --objective ${o.objective} give --${counterpart}`
      : `add --objective ${objectives[0]}`;
    throw new UsageError(`${command}: --${name} configures --objective ${which}; ${fix}`);
  }
}
