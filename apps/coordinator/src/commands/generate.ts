import { encodePrompt, generate } from '@lorafleet/models';
import { type CommandValues, defineCommand } from '../args.js';
import { backendOption, loadModelAndAdapter, startBackend } from '../common.js';

export const generateSpec = defineCommand({
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
  },
});

export async function runGenerate(o: CommandValues<typeof generateSpec>): Promise<void> {
  await startBackend(o);
  const { model, tokenizer } = await loadModelAndAdapter(o.model, o.adapter);
  const prompt = o.prompt;
  const ids = generate(model, encodePrompt(tokenizer, prompt), {
    maxNewTokens: o.maxNewTokens,
    temperature: o.temperature,
    topK: o.topK,
    topP: o.topP,
    seed: o.seed,
    stopToken: tokenizer.eosId,
  });
  process.stdout.write(`${prompt}${tokenizer.decode(ids)}\n`);
  model.dispose();
}
