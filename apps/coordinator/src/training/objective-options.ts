// The options that choose what is minimised (`train`) or measured (`eval`):
// the token loss, a preference objective on preference pairs (models'
// objective.ts: DPO against a reference, ORPO, SimPO and CPO without one), or
// KTO on unpaired examples.
import {
  CPO_LOSS_TYPES,
  DEFAULT_CPO_ALPHA,
  DEFAULT_CPO_BETA,
  DEFAULT_DISCOPOP_TAU,
  DEFAULT_DPO_BETA,
  DEFAULT_F_ALPHA,
  DEFAULT_KTO_BETA,
  DEFAULT_ORPO_BETA,
  DEFAULT_SIMPO_BETA,
  DEFAULT_SIMPO_GAMMA,
  DPO_LOSS_TYPES,
  F_DIVERGENCES,
  F_DIVERGENCE_LOSS_TYPES,
  FEEDBACK_NAMES,
  KTO_LOSS_TYPES,
  SMOOTHED_LOSS_TYPES,
  type DpoLossType,
  type DpoSettings,
  type FeedbackSettings,
  type KtoObjective,
  dpoLossTerms,
} from '@lorafleet/models';
import { type OptionValues, UsageError, defineOptions } from '../args.js';

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
      "sigmoid_norm (averaged like ipo), discopop (DiscoPOP), sft (the chosen response's NLL) and the others of docs/preference-tuning.md; " +
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
  'simpo-gamma': ['simpo'],
  'cpo-loss': ['cpo'],
  'cpo-alpha': ['cpo', 'simpo'],
  'cpo-label-smoothing': ['cpo', 'simpo'],
  'alphapo-alpha': ['simpo', 'cpo'],
  'kto-loss': ['kto'],
  'desirable-weight': ['kto'],
  'undesirable-weight': ['kto'],
};

type FeedbackKind = FeedbackSettings['kind'];

/** An option's counterpart for another objective (TRL's loss_type is --dpo-loss or --cpo-loss). */
const COUNTERPARTS: Readonly<Record<string, Partial<Record<FeedbackKind, string>>>> = {
  'dpo-loss': { cpo: 'cpo-loss', kto: 'kto-loss' },
  'cpo-loss': { dpo: 'dpo-loss', kto: 'kto-loss' },
  'kto-loss': { dpo: 'dpo-loss', cpo: 'cpo-loss' },
  'dpo-label-smoothing': { cpo: 'cpo-label-smoothing', simpo: 'cpo-label-smoothing' },
  'cpo-label-smoothing': { dpo: 'dpo-label-smoothing' },
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

/** Each objective's settings besides beta, as `eval --json` names them (TRL's names, defaults filled in). */
const NAMED: {
  [K in FeedbackKind]: (s: Extract<FeedbackSettings, { kind: K }>) => Record<string, unknown>;
} = {
  dpo: (s) => ({
    lossType: s.loss ?? 'sigmoid',
    labelSmoothing: s.labelSmoothing ?? 0,
    ...(s.lossWeights ? { lossWeights: s.lossWeights } : {}),
    ...(s.fDivergence ? { fDivergenceType: s.fDivergence } : {}),
    ...(s.fAlpha !== undefined ? { fAlphaDivergenceCoef: s.fAlpha } : {}),
    ...(s.discopopTau !== undefined ? { discopopTau: s.discopopTau } : {}),
    ...(s.ldAlpha !== undefined ? { ldAlpha: s.ldAlpha } : {}),
  }),
  orpo: () => ({}),
  simpo: (s) => ({
    gamma: s.gamma,
    alpha: s.alpha ?? 0,
    labelSmoothing: s.labelSmoothing ?? 0,
    alphaPo: s.alphaPo ?? 0,
  }),
  cpo: (s) => ({
    lossType: s.loss ?? 'sigmoid',
    alpha: s.alpha,
    labelSmoothing: s.labelSmoothing ?? 0,
    alphaPo: s.alphaPo ?? 0,
  }),
  kto: (s) => ({
    lossType: s.loss ?? 'kto',
    desirableWeight: s.desirableWeight ?? 1,
    undesirableWeight: s.undesirableWeight ?? 1,
  }),
};

/** { objective, beta, ...its other settings }, for `eval --json`. */
export function namedSettings(s: FeedbackSettings): Record<string, unknown> {
  const named = NAMED[s.kind] as (s: FeedbackSettings) => Record<string, unknown>;
  return { objective: s.kind, beta: s.beta, ...named(s) };
}

/** Each objective's settings in words, for the log. */
const DESCRIBE: {
  [K in FeedbackKind]: (s: Extract<FeedbackSettings, { kind: K }>) => string;
} = {
  dpo: (s) =>
    [
      `${describeDpoLoss(s)} loss, beta ${s.beta}`,
      smoothed(s.labelSmoothing),
      s.fDivergence && `${s.fDivergence}${s.fAlpha !== undefined ? ` (alpha ${s.fAlpha})` : ''}`,
      s.discopopTau !== undefined && `tau ${s.discopopTau}`,
      s.ldAlpha !== undefined && `ld_alpha ${s.ldAlpha}`,
    ]
      .filter(Boolean)
      .join(', '),
  orpo: (s) => `beta ${s.beta}`,
  simpo: (s) =>
    `beta ${s.beta}, gamma ${s.gamma}${s.alpha ? `, alpha ${s.alpha} (CPO-SimPO)` : ''}${smoothedTail(s.labelSmoothing)}${alphaPoTail(s.alphaPo)}`,
  cpo: (s) =>
    `${s.loss ?? 'sigmoid'} loss, beta ${s.beta}, alpha ${s.alpha}${smoothedTail(s.labelSmoothing)}${alphaPoTail(s.alphaPo)}`,
  kto: (s) =>
    `${s.loss ?? 'kto'} loss, beta ${s.beta}` +
    (s.desirableWeight !== undefined || s.undesirableWeight !== undefined
      ? `, weights ${s.desirableWeight ?? 1} desirable, ${s.undesirableWeight ?? 1} undesirable`
      : ''),
};

const smoothed = (e = 0) => e > 0 && `label smoothing ${e}`;
const smoothedTail = (e = 0) => (e > 0 ? `, label smoothing ${e}` : '');
const alphaPoTail = (a = 0) => (a !== 0 ? `, AlphaPO alpha ${a}` : '');

/** "sigmoid", or a mixture as "0.8 sigmoid + 0.2 bco_pair + 1 sft". */
function describeDpoLoss(s: DpoSettings): string {
  const terms = dpoLossTerms(s);
  if (terms.length === 1 && terms[0]!.weight === 1) return terms[0]!.type;
  return terms.map(({ type, weight }) => `${weight} ${type}`).join(' + ');
}

/** "sigmoid loss, beta 0.1" (DPO), "beta 2, gamma 1" (SimPO): the settings, for the log. */
export const describeSettings = (s: FeedbackSettings): string =>
  (DESCRIBE[s.kind] as (s: FeedbackSettings) => string)(s);

/** "DPO (sigmoid loss, beta 0.1)". */
export const describeObjective = (s: FeedbackSettings): string =>
  `${FEEDBACK_NAMES[s.kind]} (${describeSettings(s)})`;

/** What the objective compares the policy with, for the log. */
export const REFERENCES: { readonly [K in FeedbackKind]: string } = {
  dpo: 'against the base model with the adapter off',
  orpo: "the chosen prompt and response's NLL plus beta x the odds-ratio loss, no reference model",
  simpo: 'length-averaged log-probabilities, no reference model',
  cpo: "DPO's loss without a reference model plus alpha x the chosen response's NLL",
  kto: "against the base model with the adapter off, the KL estimated over each step's batch",
};
