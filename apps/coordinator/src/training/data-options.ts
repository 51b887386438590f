// The dataset options that train and eval share.
import { type CsvColumns, datasetFormat } from '@lorafleet/data';
import type { ModelConfig } from '@lorafleet/models';
import { type OptionValues, UsageError, defineOptions } from '../args.js';
import type { RowOptions } from './rows.js';

export const dataOptions = defineOptions({
  'seq-len': {
    aliases: ['max_seq_length', 'max_length', 'block_size', 'cutoff_len'],
    affects: 'math',
    kind: 'int',
    min: 2,
    description: 'tokens per row (default: min(128, the model context))',
  },
  packing: {
    affects: 'math',
    kind: 'string',
    choices: ['auto', 'pack', 'pad'],
    default: 'auto',
    description:
      'pack text into full rows, or pad one example per row (auto: pad prompt/completion, conversation and masked input_ids rows; pack text)',
  },
  'packing-strategy': {
    affects: 'math',
    aliases: ['packing_strategy'],
    kind: 'string',
    choices: ['wrapped', 'bfd', 'bfd_split'],
    default: 'wrapped',
    description:
      "how rows are packed (TRL's packing_strategy): wrapped cuts one stream of examples every --seq-len tokens, attending across them (run_clm); bfd places whole examples by best fit decreasing, keeping each apart (its own positions, attention within it; TRL's default), cutting one longer than a row to its first tokens; bfd_split cuts it into pieces instead. bfd and bfd_split pack every kind of row, prompt/completion and conversations too",
  },
  'truncation-mode': {
    affects: 'math',
    kind: 'string',
    choices: ['keep_start', 'keep_end'],
    default: 'keep_start',
    description:
      "padded rows (and --packing-strategy bfd): an example longer than --seq-len keeps its first tokens, or with keep_end its last (TRL's truncation_mode)",
  },
  'completion-only-loss': {
    affects: 'math',
    kind: 'boolean',
    default: true,
    description:
      "prompt/completion rows (text or conversations): the loss on the completion only, as TRL's default; --no-completion-only-loss trains the prompt's tokens too",
  },
  'assistant-only-loss': {
    affects: 'math',
    kind: 'boolean',
    default: true,
    description:
      "conversations: the loss on the assistant turns only (TRL's assistant_only_loss=True); --no-assistant-only-loss trains every token of the rendered conversation (TRL's default)",
  },
  padding: {
    affects: 'math',
    kind: 'string',
    choices: ['longest', 'max_length'],
    default: 'longest',
    description:
      "padded rows (prompt/completion, chat, preference pairs, KTO): each micro-batch padded to its longest row (a pair's halves each to their longest), rounded up to a multiple of 8 (transformers' padding='longest'), or every row to --seq-len (max_length: one shape for every micro-batch)",
  },
  'padding-free': {
    affects: 'math',
    aliases: ['padding_free'],
    kind: 'boolean',
    default: false,
    description:
      "each micro-batch's rows end to end in one row, each attending within itself at its own positions, with no padding (TRL's padding_free): the loss of padded rows without computing the padding. Token-loss rows (--objective sft)",
  },
  format: {
    affects: 'math',
    kind: 'string',
    choices: ['jsonl', 'csv', 'text'],
    description: 'file format (default: from the extension)',
  },
  'text-column': {
    affects: 'math',
    aliases: ['dataset_text_field'],
    kind: 'string',
    value: 'NAME',
    description: "CSV column or JSONL field with the whole text (TRL's dataset_text_field)",
  },
  'prompt-column': {
    affects: 'math',
    kind: 'string',
    value: 'NAME',
    description: 'CSV column or JSONL field of the prompt (no loss on it)',
  },
  'completion-column': {
    affects: 'math',
    kind: 'string',
    value: 'NAME',
    description: 'CSV column or JSONL field of the completion (the loss)',
  },
  'prompt-template': {
    affects: 'math',
    kind: 'string',
    value: 'TEXT',
    description:
      'the prompt built from columns or fields, e.g. "{mr}\\n" or "### Instruction:\\n{instruction}\\n\\n### Response:\\n"',
  },
  'max-bad-fraction': {
    kind: 'number',
    min: 0,
    max: 1,
    default: 0.01,
    description:
      'JSONL/CSV: share of the records that may be bad (skipped, and the first 10 reported by file:line) before the run stops',
  },
});

/** Options that CSV and JSONL files read (a text file is one document). */
export const COLUMN_OPTIONS = [
  'text-column',
  'prompt-column',
  'completion-column',
  'prompt-template',
] as const;

/** Refuses the column options for a file read as one text document (they would change nothing). */
export function checkColumnOptions(
  o: Pick<DataValues, 'format'> & { data: string },
  given: ReadonlySet<string>,
  command: 'train' | 'eval',
): void {
  // An unknown extension is the data reader's to report.
  const format =
    o.format ??
    (() => {
      try {
        return datasetFormat(o.data);
      } catch {
        return 'csv';
      }
    })();
  const column = COLUMN_OPTIONS.find((name) => given.has(name));
  if (format !== 'text' || column === undefined) return;
  const source = o.format !== undefined ? 'format' : 'data';
  throw new UsageError(
    `${command}: --${column} and --${source} contradict each other: --${column} is for CSV and JSONL files, and ${o.data} is read as one text document`,
  );
}

/** The values of the data options, in any command that spreads them in. */
export type DataValues = OptionValues<typeof dataOptions>;

export function rowOptionsFrom(o: DataValues, { contextLength: context }: ModelConfig): RowOptions {
  const seqLen = o.seqLen ?? Math.min(128, context);
  if (seqLen > context)
    throw new UsageError(`--seq-len ${seqLen} exceeds the model's context of ${context} tokens`);
  let csv: CsvColumns | undefined;
  const [text, prompt, completion] = [o.textColumn, o.promptColumn, o.completionColumn];
  if (text && (prompt || completion))
    throw new UsageError('give --text-column or --prompt-column/--completion-column, not both');
  if (o.promptTemplate !== undefined && !(prompt && completion))
    throw new UsageError(
      '--prompt-template builds the prompt of prompt/completion rows: give --prompt-column and --completion-column with it',
    );
  if (text) csv = { textColumn: text };
  else if (prompt || completion) {
    if (!prompt || !completion)
      throw new UsageError('--prompt-column and --completion-column go together');
    const template = o.promptTemplate;
    csv = {
      promptColumn: prompt,
      completionColumn: completion,
      ...(template ? { promptTemplate: template } : {}),
    };
  }
  const strategy = o.packingStrategy === 'wrapped' ? undefined : o.packingStrategy;
  if (strategy && o.packing === 'pad')
    throw new UsageError(
      `--packing-strategy ${strategy} packs rows and --packing pad pads them: give one (--packing auto or pack packs with ${strategy})`,
    );
  if (o.paddingFree && o.padding === 'max_length')
    throw new UsageError(
      '--padding-free puts rows end to end without padding and --padding max_length pads every row to --seq-len: give one',
    );
  const loss = { completionOnly: o.completionOnlyLoss, assistantOnly: o.assistantOnlyLoss };
  return {
    seqLen,
    packing: o.packing,
    // Absent when default, so the run config of a default run is as before.
    ...(loss.completionOnly && loss.assistantOnly ? {} : { loss }),
    ...(o.truncationMode === 'keep_end' ? { truncation: 'keep_end' as const } : {}),
    ...(strategy ? { packingStrategy: strategy } : {}),
    ...(o.padding === 'max_length' ? { padding: 'max_length' as const } : {}),
    ...(o.paddingFree ? { padding: 'free' as const } : {}),
    maxBadFraction: o.maxBadFraction,
    ...(o.format ? { format: o.format } : {}),
    ...(csv ? { csv } : {}),
  };
}
