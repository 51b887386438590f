import { evaluateLoss } from '@lorafleet/models';
import { type CommandValues, defineCommand } from '../args.js';
import { backendOption, baseDtypeOption, loadModelAndAdapter, startBackend } from '../common.js';
import { dataOptions, rowOptionsFrom } from '../training/data-options.js';
import { batchesOf, prepareRows } from '../training/rows.js';

export const evalSpec = defineCommand({
  name: 'eval',
  summary:
    'Mean token loss and perplexity of a model (optionally with a LoRA adapter) on a dataset.',
  options: {
    model: { kind: 'string', value: 'DIR', required: true, description: 'model folder' },
    adapter: { kind: 'string', value: 'DIR', description: 'PEFT adapter folder to apply' },
    data: { kind: 'string', value: 'FILE', required: true, description: '.jsonl, .csv or .txt' },
    ...dataOptions,
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
  await startBackend(o);
  const { model, tokenizer, config, adapted } = await loadModelAndAdapter(
    o.model,
    o.adapter,
    o.baseDtype,
  );
  const rowOptions = rowOptionsFrom(o, config);
  const prepared = await prepareRows(o.data, tokenizer, rowOptions);
  prepared.warnings.forEach((w) => console.warn(`warning: ${w}`));
  const result = await evaluateLoss(
    model,
    batchesOf(prepared.rows, o.batchSize, rowOptions.seqLen),
  );
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
      `${adapted > 0 ? ` (adapter on ${adapted} modules)` : ''}`,
  );
}
