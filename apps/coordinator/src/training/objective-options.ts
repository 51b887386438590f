// The options that choose what is minimised (`train`) or measured (`eval`):
// the token loss, or a preference objective on preference pairs (models'
// objective.ts: DPO against a reference, ORPO, SimPO and CPO without one).
import {
  CPO_LOSS_TYPES,
  DEFAULT_CPO_ALPHA,
  DEFAULT_CPO_BETA,
  DEFAULT_DPO_BETA,
  DEFAULT_ORPO_BETA,
  DEFAULT_SIMPO_BETA,
  DEFAULT_SIMPO_GAMMA,
  DPO_LOSS_TYPES,
  PREFERENCE_NAMES,
  SMOOTHED_LOSS_TYPES,
  type PreferenceKind,
  type PreferenceSettings,
} from '@lorafleet/models';
import { type OptionValues, UsageError, defineOptions } from '../args.js';

export const objectiveOptions = defineOptions({
  objective: {
    affects: 'math',
    kind: 'string',
    choices: ['sft', 'dpo', 'orpo', 'simpo', 'cpo'],
    default: 'sft',
    description:
      'sft: the token loss on the labelled tokens. On {"prompt","chosen","rejected"} JSONL lines (preference pairs): ' +
      "dpo, Direct Preference Optimization (TRL's DPOTrainer) against the base model with the adapter off; " +
      "orpo, ORPO (TRL's ORPOTrainer): the NLL of the chosen prompt and response plus an odds-ratio loss, no reference; " +
      "simpo, SimPO (TRL's CPOTrainer with loss_type simpo, cpo_alpha 0): length-averaged rewards with a margin, no reference; " +
      "cpo, CPO (TRL's CPOTrainer): DPO's loss without a reference plus the chosen response's NLL",
  },
  beta: {
    aliases: ['dpo-beta'],
    affects: 'math',
    kind: 'number',
    min: 0,
    description:
      "--objective dpo, orpo, simpo or cpo: TRL's beta (> 0): for dpo how far the policy may move from the reference " +
      `(default ${DEFAULT_DPO_BETA}), for orpo the odds-ratio term's weight (default ${DEFAULT_ORPO_BETA}), ` +
      `for simpo the reward scale (default ${DEFAULT_SIMPO_BETA}, the SimPO paper's), for cpo its temperature (default ${DEFAULT_CPO_BETA})`,
  },
  'dpo-loss': {
    aliases: ['loss_type'],
    affects: 'math',
    kind: 'string',
    choices: DPO_LOSS_TYPES,
    default: 'sigmoid',
    description:
      "--objective dpo: TRL's loss_type: sigmoid (DPO's), ipo (squared, on length-averaged log-probabilities), hinge, robust, exo_pair, sppo_hard, nca_pair, apo_zero, apo_down, bco_pair or sigmoid_norm (averaged like ipo) (docs/preference-tuning.md)",
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
});

export type ObjectiveValues = OptionValues<typeof objectiveOptions>;

/** Each objective option and the objectives it configures: refused with any other. */
export const OBJECTIVE_OPTIONS: Readonly<Record<string, readonly PreferenceKind[]>> = {
  beta: ['dpo', 'orpo', 'simpo', 'cpo'],
  'dpo-loss': ['dpo'],
  'dpo-label-smoothing': ['dpo'],
  'simpo-gamma': ['simpo'],
  'cpo-loss': ['cpo'],
  'cpo-alpha': ['cpo', 'simpo'],
};

/** An option's counterpart for another objective (TRL's loss_type is --dpo-loss or --cpo-loss). */
const COUNTERPARTS: Readonly<Record<string, Partial<Record<PreferenceKind, string>>>> = {
  'dpo-loss': { cpo: 'cpo-loss' },
  'cpo-loss': { dpo: 'dpo-loss' },
};

/** Refuses an objective option given without an objective it configures (it would change nothing). */
export function checkObjectiveOptions(
  o: ObjectiveValues,
  given: ReadonlySet<string>,
  command: 'train' | 'eval',
): void {
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

const DEFAULT_BETA: { readonly [K in PreferenceKind]: number } = {
  dpo: DEFAULT_DPO_BETA,
  orpo: DEFAULT_ORPO_BETA,
  simpo: DEFAULT_SIMPO_BETA,
  cpo: DEFAULT_CPO_BETA,
};

/** Each objective's settings from the options, beta already checked. */
const SETTINGS: {
  [K in PreferenceKind]: (
    o: ObjectiveValues,
    beta: number,
    command: string,
  ) => Extract<PreferenceSettings, { kind: K }>;
} = {
  dpo: (o, beta, command) => {
    if (o.dpoLabelSmoothing > 0 && !SMOOTHED_LOSS_TYPES.includes(o.dpoLoss)) {
      throw new UsageError(
        `${command}: --dpo-label-smoothing is for --dpo-loss ${SMOOTHED_LOSS_TYPES.join(', ')} (TRL's label_smoothing), not ${o.dpoLoss}`,
      );
    }
    return {
      kind: 'dpo',
      beta,
      ...(o.dpoLoss !== 'sigmoid' ? { loss: o.dpoLoss } : {}),
      ...(o.dpoLabelSmoothing > 0 ? { labelSmoothing: o.dpoLabelSmoothing } : {}),
    };
  },
  orpo: (_o, beta) => ({ kind: 'orpo', beta }),
  simpo: (o, beta) => {
    const alpha = resolvedCpoAlpha(o);
    return { kind: 'simpo', beta, gamma: o.simpoGamma, ...(alpha ? { alpha } : {}) };
  },
  cpo: (o, beta) => ({
    kind: 'cpo',
    beta,
    ...(o.cpoLoss !== 'sigmoid' ? { loss: o.cpoLoss } : {}),
    alpha: resolvedCpoAlpha(o)!,
  }),
};

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

/** The preference objective with its settings (DPO's absent where at TRL's defaults), or null: the token loss. */
export function preferenceSettingsFrom(
  o: ObjectiveValues,
  command: 'train' | 'eval',
): PreferenceSettings | null {
  if (o.objective === 'sft') return null;
  const beta = resolvedBeta(o)!;
  if (!(beta > 0)) throw new UsageError(`${command}: --beta must be > 0, got ${beta}`);
  return SETTINGS[o.objective](o, beta, command);
}

/** Each objective's settings besides beta, as `eval --json` names them (TRL's names, defaults filled in). */
const NAMED: {
  [K in PreferenceKind]: (s: Extract<PreferenceSettings, { kind: K }>) => Record<string, unknown>;
} = {
  dpo: (s) => ({ lossType: s.loss ?? 'sigmoid', labelSmoothing: s.labelSmoothing ?? 0 }),
  orpo: () => ({}),
  simpo: (s) => ({ gamma: s.gamma, alpha: s.alpha ?? 0 }),
  cpo: (s) => ({ lossType: s.loss ?? 'sigmoid', alpha: s.alpha }),
};

/** { objective, beta, ...its other settings }, for `eval --json`. */
export function namedSettings(s: PreferenceSettings): Record<string, unknown> {
  const named = NAMED[s.kind] as (s: PreferenceSettings) => Record<string, unknown>;
  return { objective: s.kind, beta: s.beta, ...named(s) };
}

/** Each objective's settings in words, for the log. */
const DESCRIBE: {
  [K in PreferenceKind]: (s: Extract<PreferenceSettings, { kind: K }>) => string;
} = {
  dpo: ({ beta, loss = 'sigmoid', labelSmoothing = 0 }) =>
    `${loss} loss, beta ${beta}${labelSmoothing > 0 ? `, label smoothing ${labelSmoothing}` : ''}`,
  orpo: (s) => `beta ${s.beta}`,
  simpo: (s) =>
    `beta ${s.beta}, gamma ${s.gamma}${s.alpha ? `, alpha ${s.alpha} (CPO-SimPO)` : ''}`,
  cpo: (s) => `${s.loss ?? 'sigmoid'} loss, beta ${s.beta}, alpha ${s.alpha}`,
};

/** "sigmoid loss, beta 0.1" (DPO), "beta 2, gamma 1" (SimPO): the settings, for the log. */
export const describeSettings = (s: PreferenceSettings): string =>
  (DESCRIBE[s.kind] as (s: PreferenceSettings) => string)(s);

/** "DPO (sigmoid loss, beta 0.1)". */
export const describeObjective = (s: PreferenceSettings): string =>
  `${PREFERENCE_NAMES[s.kind]} (${describeSettings(s)})`;

/** What the objective compares the policy with, for the log. */
export const REFERENCES: { readonly [K in PreferenceKind]: string } = {
  dpo: 'against the base model with the adapter off',
  orpo: "the chosen prompt and response's NLL plus beta x the odds-ratio loss, no reference model",
  simpo: 'length-averaged log-probabilities, no reference model',
  cpo: "DPO's loss without a reference model plus alpha x the chosen response's NLL",
};
