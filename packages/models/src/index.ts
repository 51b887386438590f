export {
  type Gpt2Config,
  GPT2_SMALL,
  ModelConfigError,
  gpt2ConfigFromJson,
  gpt2ConfigToJson,
  gpt2ModelConfig,
  mlpWidth,
  validateGpt2Config,
} from './gpt2/config.js';
export {
  Gpt2Model,
  type Gpt2Block,
  type Gpt2ForwardOptions,
  type LayerNorm,
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
  LOSS_CHUNK_LOGITS,
  type TokenBatch,
  chunkedNllSum,
  countLossTokens,
  lossChunkRows,
  positionNll,
  evaluateLoss,
  evaluateLossSums,
  tokenNllSum,
  tokenLossAndStats,
  TOKEN_STATS,
  type TokenStatSums,
  tokenStatSums,
  shiftedLabels,
} from './loss.js';
export {
  DEFAULT_DISCOPOP_TAU,
  DEFAULT_DPO_BETA,
  DEFAULT_F_ALPHA,
  DPO_LOSS_TYPES,
  F_DIVERGENCES,
  F_DIVERGENCE_LOSS_TYPES,
  SMOOTHED_LOSS_TYPES,
  BATCH_SORTED_LOSS_TYPES,
  sortedDescending,
  type DpoInputs,
  type DpoLossType,
  type DpoSettings,
  type FDivergence,
  dpoLossTerms,
  dpoPairLosses,
} from './dpo.js';
export {
  ldWeights,
  countPairs,
  inputTokenCounts,
  labelledTokenCounts,
  pairSequences,
  referenceLogps,
  sequenceLogps,
  withAdaptersOff,
  withReference,
  REFERENCE_ADAPTER,
} from './pair-logps.js';
export {
  DEFAULT_KTO_BETA,
  KTO_LOSS_TYPES,
  KTO_STATS,
  type KtoEvaluation,
  type KtoLogs,
  type KtoStatSums,
  ktoLogs,
  ktoStatSums,
  type KtoLossType,
  type KtoObjective,
  type KtoSettings,
  countKtoRows,
  evaluateKto,
  ktoHalf,
  ktoKl,
  ktoKlSums,
  ktoKlSumsOver,
  ktoLosses,
  ktoReadsKl,
} from './kto.js';
export {
  type PairEvaluation,
  type ResponseTokenLogs,
  type NllLogs,
  type PairSums,
  evaluatePairs,
  pairMetrics,
} from './pair-evaluation.js';
export {
  CPO_LOSS_TYPES,
  DEFAULT_CPO_ALPHA,
  DEFAULT_CPO_BETA,
  DEFAULT_ORPO_BETA,
  DEFAULT_SIMPO_BETA,
  DEFAULT_SIMPO_GAMMA,
  type CpoLossType,
  type CpoSettings,
  type OrpoSettings,
  type PairLogps,
  type SimpoSettings,
  alphaPoRewards,
  averageLogps,
  cpoPairLosses,
  orpoLogps,
  orpoLogOdds,
  orpoPairLosses,
  pairLogps,
  pairRewards,
  simpoPairLosses,
} from './reference-free.js';
export {
  type PairScores,
  type PreparedPairs,
  type PairStatSums,
  PAIR_STATS,
  preparePairs,
  pairStats,
  pairStatSums,
} from './preference.js';
export {
  type BatchLoss,
  FEEDBACK_NAMES,
  type FeedbackSettings,
  type LossUnit,
  hasReference,
  lossUnitOf,
  type Objective,
  type ObjectiveKind,
  type ObjectiveSettings,
  type PreferenceKind,
  type PreferenceSettings,
  PREFERENCE_NAMES,
  SFT,
  objectiveOf,
} from './objective.js';
export { ALL_LINEAR, addLora, matchesTarget, selectTargets, storeBasesAs } from './lora.js';
export {
  Gpt2KvCache,
  KvCache,
  type LayerKv,
  attentionBias,
  decodeStep,
  prefill,
} from './kv-cache.js';
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
export { type LoadedModel, loadModel, loadModelTokenizer } from './load.js';
export { AbsentTokenizer, type ModelTokenizer } from './absent-tokenizer.js';
export type {
  CachedPass,
  CausalLM,
  ForwardPassOptions,
  EmbeddingModule,
  LinearModule,
  ModelConfig,
  ModelFamily,
  ModelType,
  SaveOptions,
  WeightMap,
} from './causal-lm.js';
export {
  FAMILIES,
  buildModel,
  defaultLoraTargets,
  familyOf,
  modelConfigFromJson,
  modelEmbeddingModules,
  modelLinearModules,
  modelParameterCount,
  linearParameterCount,
  modelWeightShapes,
  randomModelWeights,
  readModelConfig,
  readModelWeights,
  writeModelFolder,
} from './families.js';
export { WEIGHTS_INDEX_FILE, readWeightsFolder } from './weights-folder.js';
export {
  type LlamaConfig,
  type LlamaModelType,
  type RopeScaling,
  llamaConfigFromJson,
  llamaConfigToJson,
  llamaModelConfig,
} from './llama/config.js';
export { LlamaModel, type LlamaLayer } from './llama/model.js';
export { rmsNorm } from './llama/layer-ops.js';
export { applyRotary, inverseFrequencies, rotaryTables } from './llama/rope.js';
export { llamaLinearModules, llamaWeightShapes, randomLlamaWeights } from './llama/weights.js';
export {
  type EstimateConfig,
  ACTIVATION_SHARE,
  WASM_HEAP_BYTES,
  activationBytes,
  largestMicroBatch,
  longestRow,
  parameterBytes,
  BASE_DTYPE_BYTES,
  type WeightsEstimate,
  wasmActivationBudget,
} from './memory-estimate.js';
export { type StreamEnd, type StreamOptions, slideKeep, streamTokens } from './stream.js';
export * from './tokenizer/index.js';
export {
  type PeftLoraOptions,
  fullyTrainedTensors,
  insideModulesToSave,
  layerIndexOf,
  moduleSettings,
  savedTargets,
  selectPeftModules,
} from './peft-lora.js';
export {
  type PeftTrainables,
  addPeftLora,
  exportPeftAdapter,
  addReferenceAdapter,
  importPeftAdapter,
} from './peft-model.js';
export {
  GENERATION_CONFIG_FILE,
  type GenerationDefaults,
  generationDefaultsFromJson,
  readGenerationConfig,
} from './generation-config.js';
export {
  type ScheduledStepRecipe,
  type StepGradients,
  type StepGradientsChoice,
  type StepIo,
  chooseStepGradients,
  scheduledStepUnsupported,
  stepGradientsChoice,
} from './scheduled-step.js';
export { ScheduledGradients, scheduledStepBytes } from './scheduled-gradients.js';
export { ScheduledLoss, scheduledEvaluation } from './scheduled-loss.js';
export { RESPONSE_COLUMNS, perSequence, responseColumns } from './response-metrics.js';
export {
  type DocumentLayout,
  checkPositionIds,
  documentAttention,
  documentLayout,
  withDocuments,
} from './packed-documents.js';
