export type { ChatFormat, ChatMessage, Tokenizer, TokenizerKind } from './types.js';
export { encodePrompt } from './types.js';
export { ByteTokenizer } from './byte-tokenizer.js';
export { Gpt2BpeTokenizer, type Gpt2BpeOptions } from './gpt2-bpe.js';
export { r50kTokenizer, r50kVocabAndMerges, type Gpt2VocabAndMerges } from './r50k.js';
export { loadTokenizer, saveByteTokenizerConfig, type ByteTokenizerConfigOptions } from './load.js';
export { HfTokenizer, TokenizerJsonError, type TokenizerJsonSources } from './hf-json/index.js';
export { chatFormat, chatTemplateText } from './chat-template.js';
