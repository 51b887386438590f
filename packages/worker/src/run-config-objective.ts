// A run config's objective (RunConfig.objective): a preference objective on
// pair rows, or KTO on its unpaired rows, decoded and checked against the
// rows and the LoRA settings it trains with.
import {
  CPO_LOSS_TYPES,
  DPO_LOSS_TYPES,
  F_DIVERGENCES,
  F_DIVERGENCE_LOSS_TYPES,
  type DpoLossType,
  type DpoSettings,
  dpoLossTerms,
  type FeedbackSettings,
  KTO_LOSS_TYPES,
  type PreferenceSettings,
  SMOOTHED_LOSS_TYPES,
  BATCH_SORTED_LOSS_TYPES,
} from '@lorafleet/models';
import { changesBase } from '@lorafleet/core';
import type { RunConfig } from './run-config.js';
import { type Fields, RunConfigError } from './run-config-fields.js';

/**
 * A preference objective trains on pair rows. DPO's reference is the base
 * model with the adapter off, so DPO needs a LoRA run whose base stays what
 * it was: not PiSSA (W becomes the residual), modules_to_save or trained
 * biases (they change in place).
 */
export function checkObjective(config: RunConfig): void {
  const kind = config.objective?.kind ?? 'sft';
  if (config.rows.pairs && config.rows.kto)
    throw new RunConfigError('runConfig.rows: pairs and kto are two row layouts; give one');
  if (config.rows.pairs && (kind === 'sft' || kind === 'kto'))
    throw new RunConfigError('runConfig.rows.pairs needs a preference objective');
  if (config.rows.kto && kind !== 'kto')
    throw new RunConfigError('runConfig.rows.kto needs objective kto');
  if (kind === 'sft') return;
  if (kind === 'kto' ? !config.rows.kto : config.rows.pairs !== true) {
    throw new RunConfigError(
      kind === 'kto'
        ? 'runConfig.objective: kto trains on unpaired examples (rows.kto must be given)'
        : `runConfig.objective: ${kind} trains on pairs (rows.pairs must be true)`,
    );
  }
  if (kind !== 'dpo' && kind !== 'kto') return;
  const { lora } = config;
  const why =
    config.mode !== 'lora'
      ? 'mode "full" (the reference is the base model with the adapter off)'
      : changesBase(lora.init)
        ? `lora.init "${lora.init}" (the base weights become the residual)`
        : (lora.modulesToSave?.length ?? 0) > 0
          ? 'lora.modulesToSave (trained in place)'
          : (lora.bias ?? 'none') !== 'none'
            ? `lora.bias "${lora.bias}" (trained in place)`
            : null;
  if (why) throw new RunConfigError(`runConfig.objective: ${kind} cannot train with ${why}`);
}

const PREFERENCE_KINDS = [
  'dpo',
  'orpo',
  'simpo',
  'cpo',
] as const satisfies readonly PreferenceSettings['kind'][];

/** KTO's settings, or a preference objective's; each optional one present only when not at TRL's default. */
export function feedbackObjective(o: Fields): FeedbackSettings {
  if (o.raw.kind !== 'kto') return preferenceObjective(o);
  const out: FeedbackSettings = { kind: 'kto', beta: o.numberIn('beta', (x) => x > 0, '> 0') };
  if (o.has('loss')) out.loss = o.choice('loss', KTO_LOSS_TYPES);
  for (const key of ['desirableWeight', 'undesirableWeight'] as const)
    if (o.has(key)) out[key] = o.numberIn(key, (x) => x > 0, '> 0');
  return out;
}

/** A preference objective's settings; each optional one present only when not at TRL's default. */
function preferenceObjective(o: Fields): PreferenceSettings {
  const kind = o.choice('kind', PREFERENCE_KINDS);
  const beta = o.numberIn('beta', (x) => x > 0, '> 0');
  if (kind === 'orpo') return { kind, beta };
  const alpha = () => o.numberIn('alpha', (x) => x >= 0, '>= 0');
  const smoothing = {
    ...(o.has('labelSmoothing')
      ? { labelSmoothing: o.numberIn('labelSmoothing', (x) => x >= 0 && x < 0.5, 'in [0, 0.5)') }
      : {}),
    ...(o.has('alphaPo') && kind !== 'dpo' ? { alphaPo: o.number('alphaPo') } : {}),
  };
  if (kind === 'simpo') {
    const gamma = o.numberIn('gamma', (x) => x >= 0, '>= 0');
    return { kind, beta, gamma, ...(o.has('alpha') ? { alpha: alpha() } : {}), ...smoothing };
  }
  if (kind === 'cpo') {
    const loss = o.has('loss') ? { loss: o.choice('loss', CPO_LOSS_TYPES) } : {};
    return { kind, beta, alpha: alpha(), ...loss, ...smoothing };
  }
  return { kind, ...dpoFields(o, beta), ...smoothing };
}

/** DPO's settings besides label smoothing, each checked as the coordinator checks its options. */
function dpoFields(o: Fields, beta: number): DpoSettings {
  const out: DpoSettings = { beta };
  const raw = o.raw.loss;
  if (Array.isArray(raw)) {
    if (raw.length === 0 || !raw.every((t) => DPO_LOSS_TYPES.includes(t as DpoLossType)))
      throw new RunConfigError(
        `runConfig.objective.loss must list loss types of ${DPO_LOSS_TYPES.join(', ')}, got ${JSON.stringify(raw)}`,
      );
    out.loss = raw as DpoLossType[];
  } else if (o.has('loss')) out.loss = o.choice('loss', DPO_LOSS_TYPES);
  const types = dpoLossTerms(out).map((t) => t.type);
  if (o.has('lossWeights')) {
    const w = o.raw.lossWeights;
    if (!Array.isArray(w) || w.length !== types.length || !w.every(Number.isFinite))
      throw new RunConfigError(
        `runConfig.objective.lossWeights must be ${types.length} finite numbers, one per loss type`,
      );
    out.lossWeights = w as number[];
  }
  if (o.has('fDivergence')) out.fDivergence = o.choice('fDivergence', F_DIVERGENCES);
  if (o.has('fAlpha')) out.fAlpha = o.number('fAlpha');
  if (o.has('discopopTau')) out.discopopTau = o.numberIn('discopopTau', (x) => x > 0, '> 0');
  if (o.has('ldAlpha')) out.ldAlpha = o.numberIn('ldAlpha', (x) => x >= 0 && x <= 1, 'in [0, 1]');
  if (o.has('useWeighting')) out.useWeighting = o.boolean('useWeighting');
  if (o.has('labelSmoothing') && !types.some((t) => SMOOTHED_LOSS_TYPES.includes(t)))
    throw new RunConfigError(
      `runConfig.objective.labelSmoothing needs loss ${SMOOTHED_LOSS_TYPES.join(', ')}`,
    );
  const plain = types.find((t) => !F_DIVERGENCE_LOSS_TYPES.includes(t));
  if ((out.fDivergence ?? 'reverse_kl') !== 'reverse_kl' && plain)
    throw new RunConfigError(
      `runConfig.objective.fDivergence ${out.fDivergence} cannot score loss ${plain}`,
    );
  const sorted = types.find((t) => BATCH_SORTED_LOSS_TYPES.includes(t));
  if (out.useWeighting && sorted)
    throw new RunConfigError(
      `runConfig.objective.useWeighting cannot weigh loss ${sorted}, which sorts the pairs`,
    );
  return out;
}
