import { generate } from '@lorafleet/models';
import type { CommandSpec, Options } from '../args.js';
import type { BaseDtype } from '@lorafleet/core';
import { backendOption, baseDtypeOption, loadModelAndAdapter, startBackend } from '../common.js';

export const generateSpec: CommandSpec = {
  name: 'generate',
  summary: 'Continue a prompt with a model (and optionally a LoRA adapter).',
  options: {
    model: { kind: 'string', value: 'DIR', required: true, description: 'model folder' },
    adapter: { kind: 'string', value: 'DIR', description: 'PEFT adapter folder to apply' },
    prompt: { kind: 'string', value: 'TEXT', required: true, description: 'text to continue' },
    'max-new-tokens': {
      kind: 'int',
      min: 1,
      default: 100,
      description: 'tokens to generate at most',
    },
    temperature: {
      kind: 'number',
      min: 0,
      default: 0.8,
      description: 'sampling temperature; 0 = greedy',
    },
    'top-k': {
      kind: 'int',
      min: 0,
      default: 0,
      description: 'sample among the k most likely tokens (0: all)',
    },
    'top-p': {
      kind: 'number',
      min: 0.000001,
      max: 1,
      default: 1,
      description: 'nucleus sampling threshold (1: off)',
    },
    seed: { kind: 'int', min: 0, default: 0, description: 'sampling seed' },
    backend: backendOption,
    'base-dtype': baseDtypeOption,
  },
};

export async function runGenerate(o: Options): Promise<void> {
  await startBackend(o);
  const { model, tokenizer } = await loadModelAndAdapter(
    o.string('model'),
    o.optionalString('adapter'),
    o.string('base-dtype') as BaseDtype,
  );
  const prompt = o.string('prompt');
  const ids = await generate(model, tokenizer.encode(prompt), {
    maxNewTokens: o.number('max-new-tokens'),
    temperature: o.number('temperature'),
    topK: o.number('top-k'),
    topP: o.number('top-p'),
    seed: o.number('seed'),
    stopToken: tokenizer.eosId,
  });
  process.stdout.write(`${prompt}${tokenizer.decode(ids)}\n`);
  model.dispose();
}
