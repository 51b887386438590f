export {
  type Gpt2Config,
  GPT2_SMALL,
  ModelConfigError,
  gpt2ConfigFromJson,
  gpt2ConfigToJson,
  mlpWidth,
  validateGpt2Config,
} from './gpt2/config.js';
export {
  Gpt2Model,
  type Gpt2Block,
  type Gpt2ForwardOptions,
  type LayerNorm,
  type WeightMap,
  causalMask,
  geluNew,
  gpt2WeightShapes,
  linearModules,
  layerNorm,
} from './gpt2/model.js';
export {
  CONFIG_FILE,
  WEIGHTS_FILE,
  readGpt2Config,
  readGpt2Weights,
  writeGpt2Folder,
} from './gpt2/folder.js';
export { randomGpt2Weights } from './gpt2/init.js';
export {
  IGNORE_INDEX,
  type TokenBatch,
  countLossTokens,
  evaluateLoss,
  evaluateLossSums,
  tokenNllSum,
} from './gpt2/loss.js';
export { addLora, matchesTarget, selectTargets } from './lora.js';
export { Gpt2KvCache, type LayerKv, decodeStep, prefill } from './gpt2/kv-cache.js';
export {
  type ContextOverflow,
  type GenerateBatchOptions,
  type GenerateOptions,
  type SamplingOptions,
  DEFAULT_BATCH_SIZE,
  DEFAULT_SAMPLING,
  generate,
  generateBatch,
  sampleToken,
  validateSampling,
} from './generate.js';
export { type LoadedModel, loadModel } from './load.js';
export {
  WASM_HEAP_BYTES,
  activationBytes,
  largestMicroBatch,
  parameterBytes,
  wasmActivationBudget,
} from './memory-estimate.js';
export { type StreamEnd, type StreamOptions, slideKeep, streamTokens } from './stream.js';
export * from './tokenizer/index.js';
