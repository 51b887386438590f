import { readFile } from 'node:fs/promises';
import {
  gpt2ConfigFromJson,
  randomGpt2Weights,
  saveByteTokenizerConfig,
  writeGpt2Folder,
} from '@lorafleet/models';
import { type CommandValues, defineCommand, UsageError } from '../args.js';
import { formatCount } from '../common.js';

export const initSpec = defineCommand({
  name: 'init',
  summary: 'Create a model folder with random weights (for pretraining and tests).',
  options: {
    config: {
      kind: 'string',
      value: 'FILE',
      required: true,
      description:
        'model config.json (GPT-2 fields: n_layer, n_embd, n_head, n_positions, vocab_size, ...)',
    },
    out: { kind: 'string', value: 'DIR', required: true, description: 'folder to create' },
    seed: { kind: 'int', min: 0, default: 0, description: 'seed of the random weights' },
    tokenizer: {
      kind: 'string',
      choices: ['bytes', 'gpt2'],
      default: 'bytes',
      description:
        'bytes: UTF-8 bytes + EOS (vocab_size >= 257); gpt2: GPT-2 BPE (vocab_size 50257)',
    },
  },
  details: 'example:\n  lorafleet init --config tiny.json --out models/tiny --seed 1',
});

export async function runInit(o: CommandValues<typeof initSpec>): Promise<void> {
  const path = o.config;
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`init: cannot read --config ${path}: ${(err as Error).message}`);
  }
  const config = gpt2ConfigFromJson(json, path);
  const tokenizer = o.tokenizer;
  if (tokenizer === 'bytes' && config.vocabSize < 257) {
    throw new UsageError(
      `init: the byte tokenizer needs vocab_size >= 257 (256 bytes + EOS), ${path} has ${config.vocabSize}`,
    );
  }
  if (tokenizer === 'gpt2' && config.vocabSize !== 50257) {
    throw new UsageError(
      `init: the GPT-2 tokenizer needs vocab_size 50257, ${path} has ${config.vocabSize}`,
    );
  }
  const out = o.out;
  const weights = randomGpt2Weights(config, o.seed);
  const eos = tokenizer === 'bytes' ? 256 : 50256;
  await writeGpt2Folder(out, config, weights, {
    configExtra: { bos_token_id: eos, eos_token_id: eos },
  });
  if (tokenizer === 'bytes')
    await saveByteTokenizerConfig(out, { modelMaxLength: config.nPositions });
  const params = [...weights.values()].reduce((n, w) => n + w.data.length, 0);
  console.log(
    `wrote ${out}: GPT-2 layout, ${config.nLayer} layers, ${config.nEmbd} wide, ${config.nHead} heads, ` +
      `context ${config.nPositions}, vocab ${config.vocabSize} (${tokenizer}), ${formatCount(params)} parameters`,
  );
}
