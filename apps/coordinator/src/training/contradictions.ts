// Options that contradict each other are refused (exit 2), naming both,
// instead of one of them being silently ignored.
import { changesBase } from '@lorafleet/core';
import { FEEDBACK_NAMES, hasReference } from '@lorafleet/models';
import { UsageError, givenOptions } from '../args.js';
import { checkColumnOptions } from './data-options.js';
import { checkObjectiveOptions } from './objective-options.js';
import { bestModelSettings } from './best-model-options.js';
import type { RunConfig } from '@lorafleet/worker';
import type { TrainOptions } from './train-spec.js';
import { PEFT_OPTION_NAMES, checkPeftOptions, parseInit } from './peft-options.js';

/** LoRA's own options: meaningless with --full-finetune. */
const LORA_OPTIONS = [
  'lora-r',
  'lora-alpha',
  'lora-dropout',
  'init',
  'rslora',
  'loraplus-lr-ratio',
  ...PEFT_OPTION_NAMES,
];

export function checkTrainOptions(o: TrainOptions): void {
  const given = givenOptions(o);
  const clash = (a: string, b: string, why: string) =>
    new UsageError(`train: --${a} and --${b} contradict each other: ${why}`);
  checkObjective(o, given, clash);
  if (o.evalStrategy === 'epoch' && given.has('eval-every'))
    throw clash(
      'eval-every',
      'eval-strategy',
      "--eval-strategy epoch evaluates at every epoch's end",
    );
  if (o.saveStrategy === 'epoch' && given.has('checkpoint-every'))
    throw clash(
      'checkpoint-every',
      'save-strategy',
      "--save-strategy epoch writes a checkpoint at every epoch's end",
    );
  if (given.has('gradient-accumulation-steps')) {
    if (!given.has('micro-batch-size'))
      throw new UsageError(
        "train: --gradient-accumulation-steps needs --micro-batch-size (transformers' per_device_train_batch_size): the rows each worker takes per forward",
      );
    if (given.has('batch-size'))
      throw clash(
        'batch-size',
        'gradient-accumulation-steps',
        'the batch is --micro-batch-size x --gradient-accumulation-steps x the workers; give one of them',
      );
  }
  bestModelSettings(o); // refuses an early stop or best model it cannot give, before the run starts
  if (given.has('listen') && given.has('workers')) {
    throw clash('workers', 'listen', 'with --listen no worker is spawned; give --expect N instead');
  }
  if (o.fullFinetune) {
    const lora = LORA_OPTIONS.find((name) => given.has(name));
    if (lora)
      throw clash(
        'full-finetune',
        lora,
        `--${lora} configures LoRA, which --full-finetune does not train`,
      );
  }
  checkPeftOptions(given, clash, o.init);
  if (o.fullFinetune && o.baseDtype !== undefined && o.baseDtype !== 'f32') {
    throw clash('full-finetune', 'base-dtype', 'full fine-tuning trains W, which stays f32');
  }
  checkColumnOptions(o, given, 'train');
}

/**
 * Each objective option needs its objective. Preference objectives draw no
 * dropout, so a LoRA dropout given would be ignored, and pad a pair per row.
 * DPO's reference is the base model with the adapter off: what trains the
 * base in place would make that something else.
 */
function checkObjective(
  o: TrainOptions,
  given: ReadonlySet<string>,
  clash: (a: string, b: string, why: string) => UsageError,
): void {
  checkObjectiveOptions(o, given, 'train');
  if (o.objective === 'sft') return;
  const name = FEEDBACK_NAMES[o.objective];
  const general: [string, boolean, string][] = [
    [
      'lora-dropout',
      given.has('lora-dropout') && o.loraDropout > 0,
      "trains without dropout, as TRL's trainers (disable_dropout): --lora-dropout would change nothing",
    ],
    [
      'packing',
      given.has('packing') && o.packing !== 'pad',
      `pads each response to --seq-len, ${o.objective === 'kto' ? 'an example' : 'a pair'} per row: --packing would change nothing`,
    ],
    [
      'batch-size',
      o.objective === 'kto' && o.ktoLoss === 'kto' && o.batchSize < 2,
      "estimates the KL on each example's prompt with another example's completion of its batch: --batch-size needs 2 or more (TRL's rule)",
    ],
  ];
  const found = general.find(([, on]) => on);
  if (found) throw clash('objective', found[0], `${name} ${found[2]}`);
  if (hasReference(o.objective)) checkReferenceBase(o, name, clash);
}

/** DPO's and KTO's reference is the base model with the adapter off: nothing may train the base in place. */
function checkReferenceBase(
  o: TrainOptions,
  name: string,
  clash: (a: string, b: string, why: string) => UsageError,
): void {
  const offIsNotBase = 'so the model with the adapter off (the reference) is not the base model';
  const conflicts: [string, boolean, string][] = [
    ['full-finetune', o.fullFinetune, 'a full fine-tune has no adapter to turn off'],
    [
      'init',
      changesBase(parseInit(o.init).init),
      `--init ${o.init} rewrites the base weights into the residual, ${offIsNotBase}`,
    ],
    [
      'modules-to-save',
      (o.modulesToSave?.length ?? 0) > 0,
      `those modules train in place, ${offIsNotBase}`,
    ],
    ['lora-bias', o.loraBias !== 'none', `biases train in place, ${offIsNotBase}`],
  ];
  const found = conflicts.find(([, on]) => on);
  if (found) throw clash('objective', found[0], `${name} ${found[2]}`);
}

/**
 * DPO from --init-adapter compares with a frozen copy of that adapter: one
 * that trains tensors in place (modules_to_save, biases) has none to copy.
 */
export function checkDpoStartAdapter(o: TrainOptions, lora: RunConfig['lora']): void {
  if (!hasReference(o.objective) || o.initAdapter === undefined) return;
  const inPlace = lora.modulesToSave?.length
    ? 'modules_to_save'
    : lora.bias
      ? `bias "${lora.bias}"`
      : null;
  if (inPlace) {
    throw new UsageError(
      `train: --objective ${o.objective} with --init-adapter ${o.initAdapter}: the adapter's ${inPlace} trains base tensors in place, ` +
        `so the reference (a frozen copy of the adapter) cannot be kept; merge the adapter (lorafleet merge) and train ${o.objective} on the merged model`,
    );
  }
}
