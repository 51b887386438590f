export { tf } from './backend/tf.js';
export {
  type BackendName,
  type BackendOptions,
  type DeviceInfo,
  BACKENDS,
  GPU_BACKENDS,
  activeBackend,
  deviceInfo,
  deviceName,
  settleBackend,
  useBackend,
} from './backend/select.js';
export {
  type BackendDescriptor,
  type ConformanceCheck,
  type ConformanceTolerance,
  BACKEND_DESCRIPTORS,
  backendDescriptor,
} from './backend/descriptors/index.js';
export {
  type WebGpuDevice,
  loadWebGpuKernels,
  releaseWebGpu,
  webGpuErrors,
} from './backend/webgpu.js';
export {
  type WebGpuAdapterListing,
  describeAdapters,
  listWebGpuAdapters,
  noAdapterError,
} from './backend/webgpu-dawn.js';
export {
  type DeviceLayerReport,
  builtDeviceLayer,
  deviceLayerEnv,
  deviceLayerReportFile,
  takeDeviceLayerReport,
} from './backend/vulkan-device-layer.js';
export {
  DEFAULT_TILE_TABLE,
  LORAFLEET_MATMUL,
  LORAFLEET_XENT,
  LORAFLEET_XENT_GRAD,
  NORM_APPLY,
  NORM_GRAD,
  NORM_STATS,
  SWIGLU,
  SWIGLU_GRAD,
  GEGLU,
  GEGLU_GRAD,
  type NormKind,
  type LoraFleetMatMulAttrs,
  type MatMulTile,
  STOCK_BATCH_MATMUL,
  TILE_CANDIDATES,
  type TileTable,
  type WebGpuMatMulChoice,
  chooseRule,
  chooseTile,
  crossEntropyRows,
  forceMatMulTile,
  ruleHolds,
  tileProblem,
  fusedCrossEntropyAvailable,
  fusedNorm,
  fusedNormAvailable,
  fusedActivationsAvailable,
  useFusedActivations,
  fusedAttentionAvailable,
  useFusedAttention,
  ATTN_DELTA,
  DROPOUT,
  ATTN_GRAD,
  ATTN_OUT,
  ATTN_STATS,
  useSplitK,
  forceSplitK,
  splitCount,
  rankForm,
  useRankProducts,
  useFusedCrossEntropy,
  useFusedNorm,
  selectWebGpuMatMul,
  webGpuMatMulChoice,
  tileName,
  tileTable,
} from './backend/webgpu-kernels/index.js';
export { lossAndGradsAsync, readAsync, readParametersAsync } from './backend/async-read.js';
export { GradientAccumulator, settleDevice } from './backend/grad-accumulator.js';
export { installSharedClone, uninstallSharedClone } from './backend/saved-clone.js';
export { Rng, deriveSeed, lowbias32 } from './random.js';
export {
  type LoraSettings,
  DEFAULT_LORA,
  loraScaling,
  validateLoraSettings,
} from './lora/config.js';
export {
  type LoraInit,
  type LoraInitShape,
  type LoraInitResult,
  initLora,
  kaimingUniformA,
  gaussianA,
  pissaInit,
  oloraInit,
  orthogonalFactors,
  orthogonalInit,
  changesBase,
  pissaNiter,
  RESIDUAL_INITS,
  INIT_TITLES,
  LORA_INIT_KINDS,
} from './lora/init.js';
export {
  LoraLinear,
  type LoraLinearOptions,
  type LoraAdapter,
  type ForwardOptions,
} from './lora/linear.js';
export { TrainableParameters, type ParameterSlot } from './lora/params.js';
export { LoraEmbedding, type LoraEmbeddingAdapter } from './lora/embedding.js';
export { fusedLoraAvailable, useFusedLoraLinear } from './lora/fused-linear.js';
export {
  type BaseDtype,
  type HalfDtype,
  BASE_DTYPES,
  packHalves,
  unpackHalvesInto,
} from './lora/base-dtype.js';
export {
  type PackedBase,
  type PackedDtype,
  type UnpackCall,
  packBase,
  packedNf4Base,
  unpackBase,
} from './lora/packed-base.js';
export {
  NF4_BLOCK,
  NF4_CODE,
  type Nf4Packed,
  dequantizeNf4Into,
  nf4Index,
  quantizeNf4,
} from './lora/nf4.js';
export { UNPACK_HALVES, UNPACK_NF4 } from './backend/unpack-base.js';
export {
  type AdamWOptions,
  type AdamWState,
  ADAMW_DEFAULTS,
  adamWStep,
  createAdamWState,
  cloneAdamWState,
} from './optim/adamw.js';
export { clipGlobalNorm, globalNorm } from './optim/clip.js';
export {
  type OptimizerKind,
  type OptimizerOptionsOf,
  type OptimizerRule,
  type OptimizerSettings,
  type OptimizerState,
  type SlotLayout,
  type StateBuffer,
  type UpdateContext,
  DEFAULT_OPTIMIZER,
  OPTIMIZERS,
  OPTIMIZER_KINDS,
  cloneOptimizerState,
  createOptimizerState,
  optimizerStep,
  optimizerTitle,
  stateFloatsPerValue,
  stateBuffers,
} from './optim/optimizer.js';
export { type SgdOptions, SGD_DEFAULTS } from './optim/sgd.js';
export { type AdagradOptions, ADAGRAD_DEFAULTS } from './optim/adagrad.js';
export { type RmspropOptions, RMSPROP_DEFAULTS } from './optim/rmsprop.js';
export { type AdafactorOptions, ADAFACTOR_DEFAULTS } from './optim/adafactor.js';
export { type LionOptions } from './optim/lion.js';
export { loraplusFast, loraplusLrScales } from './optim/loraplus.js';
export { takesWeightDecay, weightDecayScales } from './optim/weight-decay.js';
export {
  type LrSchedule,
  type ScheduleKind,
  type WsdShape,
  NEEDS_TOTAL,
  SCHEDULE_KINDS,
  lrFactor,
  scheduledLr,
  validateSchedule,
} from './optim/schedule.js';
export {
  PLATEAU_DEFAULTS,
  type PlateauSettings,
  type PlateauState,
  initialPlateau,
  plateauLr,
  plateauStep,
} from './optim/plateau.js';
export * from './svd/index.js';
export * from './io/index.js';
export { updateSvd, subspaceSimilarity } from './lora/analysis.js';
export { exportAdapter, importAdapter } from './lora/peft-bridge.js';
export { type InitialFactors, pissaToLora } from './lora/pissa-convert.js';
export { softmaxCrossEntropy } from './ops/softmax-cross-entropy.js';
export { tokenStats, tokenStatsComposed } from './ops/token-stats.js';
export { geluNew, geluNewComposed } from './ops/gelu-new.js';
export {
  type DropoutKeys,
  dropoutKeeps,
  dropoutKeys,
  dropoutMask,
  seededDropout,
} from './ops/dropout.js';
export { GELU_NEW, GELU_NEW_GRAD } from './backend/gelu-layer-norm.js';
export {
  GATED,
  type GatedActivation,
  gated,
  gatedComposed,
  swiglu,
  swigluComposed,
} from './ops/gated.js';
export {
  type CausalAttentionOptions,
  causalAttention,
  causalAttentionComposed,
} from './ops/causal-attention.js';
export { layerNorm, layerNormComposed } from './ops/layer-norm.js';
export { rmsNorm, rmsNormComposed, rmsNormFused } from './ops/rms-norm.js';
export { RMS_NORM, RMS_NORM_GRAD } from './backend/rms-norm.js';
export { rotary, rotaryFusable } from './ops/rotary.js';
export { ROTARY } from './backend/rotary.js';
export { type CheckpointedBlock, checkpoint } from './ops/checkpoint.js';
export {
  addBias,
  addConstant,
  addSame,
  mulConstant,
  reshapeTo,
  scaleBy,
} from './ops/shape-only.js';
export { PlanRecorder, type RecordingBackend } from './backend/webgpu-plan/recorder.js';
export { Plan } from './backend/webgpu-plan/plan.js';
export {
  PlanOps,
  type AttentionSaved,
  type PlanDropout,
  view as planView,
} from './backend/webgpu-plan/ops.js';
export { allocateByLiveness, type BufferUse } from './backend/webgpu-plan/allocate.js';
export {
  packUniforms,
  programUniforms,
  type UniformField,
} from './backend/webgpu-plan/uniforms.js';
