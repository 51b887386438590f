export { HfTokenizer, type TokenizerJsonSources } from './hf-tokenizer.js';
export { TokenizerJsonError } from './json.js';
export { cleanUpTokenizationSpaces } from './tokenizer-config.js';
