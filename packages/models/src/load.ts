import { type Gpt2Config } from './gpt2/config.js';
import { readGpt2Config, readGpt2Weights } from './gpt2/folder.js';
import { Gpt2Model } from './gpt2/model.js';
import { loadTokenizer, type Tokenizer } from './tokenizer/index.js';

export interface LoadedModel {
  dir: string;
  config: Gpt2Config;
  model: Gpt2Model;
  tokenizer: Tokenizer;
}

/** A model folder: config, weights (checked by name and shape) and its tokenizer. */
export async function loadModel(dir: string): Promise<LoadedModel> {
  const config = await readGpt2Config(dir);
  const tokenizer = await loadTokenizer(dir);
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new Error(
      `${dir}: the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${config.vocabSize} (vocab_size)`,
    );
  }
  const weights = await readGpt2Weights(dir, config);
  return { dir, config, model: new Gpt2Model(config, weights), tokenizer };
}
