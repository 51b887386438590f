// An objective's settings in words: for the log (describeObjective,
// REFERENCES) and by TRL's names for `eval --json` (namedSettings).
import {
  FEEDBACK_NAMES,
  type DpoSettings,
  type FeedbackSettings,
  dpoLossTerms,
} from '@lorafleet/models';
import type { FeedbackKind } from './objective-options.js';

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
    ...(s.useWeighting ? { useWeighting: true } : {}),
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
      s.useWeighting && 'WPO weighting',
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
