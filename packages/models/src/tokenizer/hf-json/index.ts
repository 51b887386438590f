export { HfTokenizer, type TokenizerJsonSources } from './hf-tokenizer.js';
export { TokenizerJsonError } from './json.js';
