// The dataset options that train and eval share.
import type { CsvColumns, DatasetFormat } from '@lorafleet/data';
import { type OptionSpec, type Options, UsageError } from '../args.js';
import type { Packing, RowOptions } from './rows.js';

export const dataOptions: Record<string, OptionSpec> = {
  'seq-len': {
    kind: 'int',
    min: 2,
    description: 'tokens per row (default: min(128, the model context))',
  },
  packing: {
    kind: 'string',
    choices: ['auto', 'pack', 'pad'],
    default: 'auto',
    description:
      'pack text into full rows, or pad one example per row (auto: pad when prompts are masked)',
  },
  format: {
    kind: 'string',
    choices: ['jsonl', 'csv', 'text'],
    description: 'file format (default: from the extension)',
  },
  'text-column': { kind: 'string', value: 'NAME', description: 'CSV: column with the whole text' },
  'prompt-column': {
    kind: 'string',
    value: 'NAME',
    description: 'CSV: prompt column (no loss on it)',
  },
  'completion-column': {
    kind: 'string',
    value: 'NAME',
    description: 'CSV: completion column (the loss)',
  },
  'prompt-template': {
    kind: 'string',
    value: 'TEXT',
    description: 'CSV: prompt built from columns, e.g. "{mr}\\n"',
  },
};

export function rowOptionsFrom(o: Options, context: number): RowOptions {
  const seqLen = o.optionalNumber('seq-len') ?? Math.min(128, context);
  if (seqLen > context)
    throw new UsageError(`--seq-len ${seqLen} exceeds the model's context of ${context} tokens`);
  let csv: CsvColumns | undefined;
  const [text, prompt, completion] = [
    o.optionalString('text-column'),
    o.optionalString('prompt-column'),
    o.optionalString('completion-column'),
  ];
  if (text && (prompt || completion))
    throw new UsageError('give --text-column or --prompt-column/--completion-column, not both');
  if (text) csv = { textColumn: text };
  else if (prompt || completion) {
    if (!prompt || !completion)
      throw new UsageError('--prompt-column and --completion-column go together');
    const template = o.optionalString('prompt-template');
    csv = {
      promptColumn: prompt,
      completionColumn: completion,
      ...(template ? { promptTemplate: template } : {}),
    };
  }
  return {
    seqLen,
    packing: o.string('packing') as Packing,
    ...(o.optionalString('format') ? { format: o.string('format') as DatasetFormat } : {}),
    ...(csv ? { csv } : {}),
  };
}
