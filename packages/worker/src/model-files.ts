// Files of a model folder beside its weights.
import { access, copyFile } from 'node:fs/promises';
import { join } from 'node:path';

const TOKENIZER_FILES = [
  'tokenizer_config.json',
  'vocab.json',
  'merges.txt',
  'tokenizer.json',
  'tokenizer.model',
  'added_tokens.json',
  'special_tokens_map.json',
  'chat_template.jinja',
  // Not tokenizer files, but a merged or fine-tuned model generates as its base did, and a
  // multimodal one (Gemma 3) keeps its processor: its chat template, its image preprocessing.
  'generation_config.json',
  'chat_template.json',
  'processor_config.json',
  'preprocessor_config.json',
];

/** Copies whichever tokenizer files the source folder has (a saved model loads with its tokenizer). */
export async function copyTokenizerFiles(from: string, to: string): Promise<void> {
  for (const file of TOKENIZER_FILES) {
    const src = join(from, file);
    const present = await access(src).then(
      () => true,
      () => false,
    );
    if (present) await copyFile(src, join(to, file));
  }
}
