import { loadPeftAdapter } from '@lorafleet/core';
import {
  type CausalLM,
  type KtoObjective,
  PREFERENCE_NAMES,
  type PreferenceSettings,
  type TokenBatch,
  evaluateKto,
  evaluateLoss,
  addReferenceAdapter,
  evaluatePairs,
  hasReference,
  ktoLogs,
  pairMetrics,
} from '@lorafleet/models';
import { UsageError, givenOptions } from '../args.js';
import { type CommandValues, defineCommand } from '../args.js';
import {
  ADAPTER_NAME,
  backendOption,
  baseDtypeOption,
  loadModelAndAdapter,
  startBackend,
} from '../common.js';
import { checkColumnOptions, dataOptions, rowOptionsFrom } from '../training/data-options.js';
import { describeSettings, namedSettings } from '../training/objective-describe.js';
import { checkObjectiveOptions, objectiveOptions } from '../training/objective-options.js';
import { feedbackRows, feedbackSettingsFrom } from '../training/objective-settings.js';
import { batchesOf, prepareRows } from '../training/rows.js';

export const evalSpec = defineCommand({
  name: 'eval',
  summary:
    "Mean token loss and perplexity of a model (optionally with a LoRA adapter) on a dataset, with TRL's SFT metrics (the share of tokens the argmax predicts, the mean entropy); with --objective dpo, orpo, simpo or cpo, that loss and TRL's reward metrics on preference pairs (DPO: of an adapter against the model without it); with --objective kto, KTO's loss on unpaired feedback (of an adapter against the model without it).",
  options: {
    model: { kind: 'string', value: 'DIR', required: true, description: 'model folder' },
    adapter: { kind: 'string', value: 'DIR', description: 'PEFT adapter folder to apply' },
    'reference-adapter': {
      kind: 'string',
      value: 'DIR',
      description:
        "--objective dpo: DPO's reference is the model with this adapter instead of without one (the --init-adapter of a DPO run that started from a trained adapter)",
    },
    data: { kind: 'string', value: 'FILE', required: true, description: '.jsonl, .csv or .txt' },
    ...dataOptions,
    ...objectiveOptions,
    'batch-size': {
      aliases: ['per_device_eval_batch_size'],
      kind: 'int',
      min: 1,
      default: 8,
      description: 'rows per forward pass',
    },
    json: { kind: 'boolean', description: 'print the result as JSON' },
    backend: backendOption,
    'base-dtype': baseDtypeOption,
  },
});

export async function runEval(o: CommandValues<typeof evalSpec>): Promise<void> {
  checkObjectiveOptions(o, givenOptions(o), 'eval'); // before loading anything
  checkColumnOptions(o, givenOptions(o), 'eval');
  await startBackend(o);
  const { model, tokenizer, config, adapted } = await loadModelAndAdapter(
    o.model,
    o.adapter,
    o.baseDtype,
  );
  const preference = feedbackSettingsFrom(o, 'eval');
  const compared = preference && hasReference(preference.kind);
  if (compared && adapted === 0) {
    model.dispose();
    throw new UsageError(
      `eval: --objective ${preference.kind} compares the model with its adapter on and off: give --adapter`,
    );
  }
  if (o.referenceAdapter !== undefined) {
    if (!compared) {
      model.dispose();
      throw new UsageError(
        "eval: --reference-adapter is DPO's and KTO's reference: give --objective dpo or kto",
      );
    }
    addReferenceAdapter(model, await loadPeftAdapter(o.referenceAdapter), ADAPTER_NAME);
  }
  const rowOptions = { ...rowOptionsFrom(o, config), ...feedbackRows(preference, o.batchSize) };
  const prepared = await prepareRows(o.data, tokenizer, rowOptions);
  prepared.warnings.forEach((w) => console.warn(`warning: ${w}`));
  const batches = batchesOf(prepared.rows, o.batchSize, rowOptions);
  const rows = prepared.rows.length;
  if (preference?.kind === 'kto') return reportKto(o, model, batches, preference, adapted, rows);
  if (preference) return reportPairs(o, model, batches, preference, adapted, rows);
  const result = await evaluateLoss(model, batches);
  model.dispose();
  if (!Number.isFinite(result.loss)) {
    throw new Error(
      `the loss on ${o.data} is ${result.loss} over ${result.tokens} tokens: the model` +
        `${adapted > 0 ? ` with the adapter ${o.adapter}` : ''} computes non-finite values (a diverged run? check its learning rate and lora-alpha)`,
    );
  }
  if (o.json) {
    console.log(JSON.stringify({ ...result, rows: prepared.rows.length, adaptedModules: adapted }));
    return;
  }
  console.log(
    `${o.data}: loss ${result.loss.toFixed(4)}, perplexity ${result.perplexity.toFixed(2)} over ${result.tokens} tokens` +
      `${adapted > 0 ? ` (adapter on ${adapted} modules)` : ''}; ` +
      `token accuracy ${result.meanTokenAccuracy.toFixed(4)}, entropy ${result.entropy.toFixed(4)}`,
  );
}

/** KTO's loss of the adapter against the model without it, the KL estimated over the whole file. */
async function reportKto(
  o: CommandValues<typeof evalSpec>,
  model: CausalLM,
  batches: TokenBatch[],
  settings: KtoObjective,
  adapted: number,
  rows: number,
): Promise<void> {
  const sums = await evaluateKto(model, batches, settings).finally(() => model.dispose());
  const loss = sums.lossSum / sums.examples;
  if (!Number.isFinite(loss)) {
    throw new Error(
      `the KTO loss on ${o.data} is ${loss}: the model with the adapter ${o.adapter} computes non-finite values`,
    );
  }
  const logs = ktoLogs(sums, sums.examples, sums.kl);
  if (o.json) {
    const out = { ...namedSettings(settings), loss, examples: sums.examples, ...logs };
    console.log(JSON.stringify({ ...out, rows, adaptedModules: adapted }));
    return;
  }
  const f = (x: number | undefined) => (x === undefined ? 'none' : x.toFixed(4));
  console.log(
    `${o.data}: KTO loss ${f(loss)} over ${sums.examples} examples (${describeSettings(settings)}); ` +
      `KL ${f(logs.kl)}, reward margin ${f(logs.rewardMargin)} ` +
      `(desirable ${f(logs.rewardChosen)}, undesirable ${f(logs.rewardRejected)}); adapter on ${adapted} modules`,
  );
}

/** A preference objective: its loss and TRL's reward metrics (DPO's: of the adapter against the model without it). */
async function reportPairs(
  o: CommandValues<typeof evalSpec>,
  model: CausalLM,
  batches: TokenBatch[],
  settings: PreferenceSettings,
  adapted: number,
  rows: number,
): Promise<void> {
  const sums = await evaluatePairs(model, batches, settings).finally(() => model.dispose());
  const name = PREFERENCE_NAMES[settings.kind];
  if (sums.pairs === 0) throw new Error(`${o.data}: no preference pairs to evaluate`);
  const result = pairMetrics(sums);
  if (!Number.isFinite(result.loss)) {
    throw new Error(
      `the ${name} loss on ${o.data} is ${result.loss}: the model` +
        `${adapted > 0 ? ` with the adapter ${o.adapter}` : ''} computes non-finite values`,
    );
  }
  if (o.json) {
    const out = { ...namedSettings(settings), ...result, rows, adaptedModules: adapted };
    console.log(JSON.stringify(out));
    return;
  }
  const f = (x: number) => x.toFixed(4);
  console.log(
    `${o.data}: ${name} loss ${f(result.loss)} over ${result.pairs} pairs (${describeSettings(settings)}); ` +
      `reward accuracy ${f(result.rewardAccuracy)}, margin ${f(result.rewardMargin)} ` +
      `(chosen ${f(result.rewardChosen)}, rejected ${f(result.rewardRejected)})` +
      (result.meanTokenAccuracy === undefined
        ? ''
        : `; token accuracy ${f(result.meanTokenAccuracy)}, entropy ${f(result.entropy!)}`) +
      (result.nllLoss === undefined ? '' : `; NLL ${f(result.nllLoss)}`) +
      (result.logOddsRatio === undefined
        ? ''
        : `, log odds ratio ${f(result.logOddsChosen!)} (its log sigmoid ${f(result.logOddsRatio)})`) +
      (adapted > 0 ? `; adapter on ${adapted} modules` : ''),
  );
}
