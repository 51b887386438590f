import { readFile } from 'node:fs/promises';
import {
  familyOf,
  modelConfigFromJson,
  randomModelWeights,
  saveByteTokenizerConfig,
  writeModelFolder,
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
        'model config.json with its model_type: gpt2 (n_layer, n_embd, n_head, n_positions, vocab_size, ...) or ' +
        'llama, mistral, qwen2, qwen3 (hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, ...)',
    },
    out: { kind: 'string', value: 'DIR', required: true, description: 'folder to create' },
    seed: { kind: 'int', min: 0, default: 0, description: 'seed of the random weights' },
    tokenizer: {
      kind: 'string',
      choices: ['bytes', 'gpt2', 'none'],
      default: 'bytes',
      description:
        'bytes: UTF-8 bytes + EOS (vocab_size >= 257); gpt2: GPT-2 BPE (vocab_size 50257); ' +
        'none: no tokenizer files (pre-tokenized {"input_ids"} data only)',
    },
  },
  details:
    'examples:\n  lorafleet init --config tiny.json --out models/tiny --seed 1\n' +
    '  lorafleet init --config tiny-llama.json --out models/tiny-llama --tokenizer none\n' +
    '    (tiny-llama.json: {"model_type": "llama", "vocab_size": 300, "hidden_size": 32, "intermediate_size": 64,\n' +
    '     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64})',
});

export async function runInit(o: CommandValues<typeof initSpec>): Promise<void> {
  const path = o.config;
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`init: cannot read --config ${path}: ${(err as Error).message}`);
  }
  const config = modelConfigFromJson(json, path);
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
  const weights = randomModelWeights(config, o.seed);
  const eos = { bytes: 256, gpt2: 50256, none: config.vocabSize - 1 }[tokenizer];
  await writeModelFolder(out, config, weights, {
    configExtra: { bos_token_id: eos, eos_token_id: eos },
  });
  if (tokenizer === 'bytes')
    await saveByteTokenizerConfig(out, { modelMaxLength: config.contextLength });
  const params = [...weights.values()].reduce((n, w) => n + w.data.length, 0);
  console.log(
    `wrote ${out}: ${familyOf(config).name} layout (model_type ${config.modelType}), ${config.numLayers} layers, ` +
      `${config.hiddenSize} wide, context ${config.contextLength}, vocab ${config.vocabSize} (${tokenizer}), ` +
      `${formatCount(params)} parameters`,
  );
}
