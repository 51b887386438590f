// What a saved model folder (merge, full fine-tuning) takes from its source
// besides the weights: the tokenizer in every layout transformers writes, the
// generation defaults, and a multimodal model's processor files.
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { copyTokenizerFiles } from '../src/index.js';

const root = await mkdtemp(join(tmpdir(), 'lorafleet-model-files-'));
afterAll(() => rm(root, { recursive: true, force: true }));

test("copies the tokenizer, chat template, generation and processor files, and nothing of the source's weights", async () => {
  const [from, to] = [join(root, 'from'), join(root, 'to')];
  const kept = [
    'tokenizer.json',
    'tokenizer_config.json',
    'tokenizer.model',
    'special_tokens_map.json',
    'added_tokens.json',
    'chat_template.jinja',
    'chat_template.json',
    'generation_config.json',
    'processor_config.json',
    'preprocessor_config.json',
  ];
  const left = ['config.json', 'model.safetensors', 'README.md'];
  await Promise.all([mkdir(from), mkdir(to)]);
  for (const file of [...kept, ...left]) await writeFile(join(from, file), file);
  await copyTokenizerFiles(from, to);
  expect((await readdir(to)).sort()).toEqual([...kept].sort());
});
