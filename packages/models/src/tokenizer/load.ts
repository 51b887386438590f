import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ByteTokenizer } from './byte-tokenizer.js';
import { Gpt2BpeTokenizer } from './gpt2-bpe.js';
import { readJsonObjectIfExists } from './hf-files.js';
import { r50kTokenizer } from './r50k.js';
import { chatFormat, chatTemplateText } from './chat-template.js';
import { HfTokenizer } from './hf-json/index.js';
import type { Tokenizer } from './types.js';

const BYTE_TOKENIZER_CLASS = 'ByteTokenizer';
const GPT2_VOCAB_SIZE = 50257;

export interface ByteTokenizerConfigOptions {
  /** Longest sequence the model was trained on; recorded for Hugging Face tools. */
  modelMaxLength?: number;
}

/**
 * Picks the tokenizer for a model folder. The first rule that applies wins:
 *
 * 1. `tokenizer_config.json` has `"tokenizer_class": "ByteTokenizer"` ->
 *    {@link ByteTokenizer} (what {@link saveByteTokenizerConfig} writes for the
 *    project's own byte-level models).
 * 2. `tokenizer.json` exists -> {@link HfTokenizer} (Hugging Face tokenizers
 *    format: Llama 2/3, Mistral, Qwen2/3, GPT-2), with tokenizer_config.json's
 *    BOS/EOS and, when it has one, its chat_template.
 * 3. `vocab.json` and `merges.txt` both exist -> {@link Gpt2BpeTokenizer.fromFiles}
 *    (a Hugging Face GPT-2-style folder). Only one of the two is an error,
 *    since falling back would silently pick a different vocabulary.
 * 4. `config.json` has `"model_type": "gpt2"` and `"vocab_size": 50257` ->
 *    {@link r50kTokenizer} (stock GPT-2 weights without tokenizer files).
 *
 * Otherwise it throws, naming the folder, what each file said, and the fix.
 */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const tokenizerConfigPath = join(dir, 'tokenizer_config.json');
  const tokenizerConfig = await readJsonObjectIfExists(tokenizerConfigPath);
  if (tokenizerConfig?.['tokenizer_class'] === BYTE_TOKENIZER_CLASS) {
    const tokenizer = new ByteTokenizer();
    const eos = tokenizerConfig['eos_token_id'];
    if (eos !== undefined && eos !== tokenizer.eosId) {
      throw new Error(
        `${tokenizerConfigPath}: eos_token_id is ${JSON.stringify(eos)} but ByteTokenizer's EOS is ${tokenizer.eosId}; fix the file or rewrite it with saveByteTokenizerConfig`,
      );
    }
    return tokenizer;
  }

  const tokenizerJson = await loadTokenizerJson(dir, tokenizerConfig);
  if (tokenizerJson) return tokenizerJson;

  const vocabPath = join(dir, 'vocab.json');
  const mergesPath = join(dir, 'merges.txt');
  const [hasVocab, hasMerges] = await Promise.all([exists(vocabPath), exists(mergesPath)]);
  if (hasVocab && hasMerges) return Gpt2BpeTokenizer.fromFiles(vocabPath, mergesPath);
  if (hasVocab !== hasMerges) {
    const [found, missing] = hasVocab ? [vocabPath, mergesPath] : [mergesPath, vocabPath];
    throw new Error(
      `${dir}: found ${found} but not ${missing}; copy both files from the base model's Hugging Face folder`,
    );
  }

  const configPath = join(dir, 'config.json');
  const config = await readJsonObjectIfExists(configPath);
  if (config?.['model_type'] === 'gpt2' && config['vocab_size'] === GPT2_VOCAB_SIZE) {
    return r50kTokenizer();
  }

  const saw = [
    tokenizerConfig
      ? `tokenizer_config.json has tokenizer_class ${JSON.stringify(tokenizerConfig['tokenizer_class'])}`
      : 'no tokenizer_config.json',
    'no tokenizer.json, vocab.json or merges.txt',
    config
      ? `config.json has model_type ${JSON.stringify(config['model_type'])}, vocab_size ${JSON.stringify(config['vocab_size'])}`
      : 'no config.json',
  ];
  throw new Error(
    `cannot choose a tokenizer for ${dir}: looked for tokenizer_config.json with ` +
      `"tokenizer_class": "${BYTE_TOKENIZER_CLASS}", tokenizer.json, vocab.json + merges.txt, or config.json with ` +
      `"model_type": "gpt2" and "vocab_size": ${GPT2_VOCAB_SIZE}; found ${saw.join(', ')}. ` +
      `Copy tokenizer.json and tokenizer_config.json (or vocab.json and merges.txt) from the base model, or call saveByteTokenizerConfig(dir) for a byte-level model.`,
  );
}

/**
 * Marks `dir` as a byte-level model for {@link loadTokenizer}. Plain JSON
 * with Hugging Face's key names, so HF tooling can read it even though it has
 * no ByteTokenizer class. Returns the path written.
 */
export async function saveByteTokenizerConfig(
  dir: string,
  options: ByteTokenizerConfigOptions = {},
): Promise<string> {
  const tokenizer = new ByteTokenizer();
  const config: Record<string, unknown> = {
    tokenizer_class: BYTE_TOKENIZER_CLASS,
    vocab_size: tokenizer.vocabSize,
    eos_token_id: tokenizer.eosId,
  };
  if (options.modelMaxLength !== undefined) config['model_max_length'] = options.modelMaxLength;
  await mkdir(dir, { recursive: true });
  const path = join(dir, 'tokenizer_config.json');
  await writeFile(path, JSON.stringify(config, null, 2) + '\n');
  return path;
}

/** tokenizer.json (+ tokenizer_config.json) when the folder has one. */
async function loadTokenizerJson(
  dir: string,
  tokenizerConfig: Record<string, unknown> | undefined,
): Promise<HfTokenizer | undefined> {
  const path = join(dir, 'tokenizer.json');
  const json = await readJsonObjectIfExists(path);
  if (!json) return undefined;
  const configPath = join(dir, 'tokenizer_config.json');
  const tokenizer = new HfTokenizer(json, tokenizerConfig, {
    tokenizerJson: path,
    tokenizerConfig: configPath,
  });
  // Newer folders keep the template in its own file, which transformers prefers.
  const jinjaPath = join(dir, 'chat_template.jinja');
  const jinja = await readFile(jinjaPath, 'utf8').catch(() => undefined);
  const template = jinja ?? chatTemplateText(tokenizerConfig?.['chat_template'], configPath);
  if (template !== undefined) {
    tokenizer.chat = chatFormat(template, tokenizer, jinja !== undefined ? jinjaPath : configPath);
  }
  return tokenizer;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
