// The project's own WGSL kernels for tfjs's 'webgpu' backend (docs/webgpu-kernels.md).
export {
  LORAFLEET_MATMUL,
  type LoraFleetMatMulAttrs,
  loraFleetMatMulAttrs,
  STOCK_BATCH_MATMUL,
  type WebGpuMatMulChoice,
  registerWebGpuMatMul,
  selectWebGpuMatMul,
  webGpuMatMulChoice,
} from './matmul-kernel.js';
export {
  DEFAULT_TILE_TABLE,
  type MatMulTile,
  TILE_CANDIDATES,
  type TileRule,
  type TileTable,
  chooseRule,
  chooseTile,
  forceMatMulTile,
  ruleHolds,
  tileName,
  tileProblem,
  tileTable,
} from './tiles.js';
export {
  LORAFLEET_XENT,
  LORAFLEET_XENT_GRAD,
  type FlatDispatchUtil,
  registerWebGpuCrossEntropy,
} from './cross-entropy.js';
export {
  crossEntropyRows,
  fusedCrossEntropyAvailable,
  useFusedCrossEntropy,
} from './cross-entropy-op.js';
export {
  NORM_APPLY,
  NORM_GRAD,
  NORM_STATS,
  type NormKind,
  fusedNorm,
  fusedNormAvailable,
  registerWebGpuNorm,
  useFusedNorm,
} from './norm.js';
export {
  SWIGLU,
  SWIGLU_GRAD,
  GEGLU,
  GEGLU_GRAD,
  fusedActivationsAvailable,
  registerWebGpuActivations,
  useFusedActivations,
} from './activations.js';
export { forceSplitK, kChunks, splitCount, useSplitK } from './split-k.js';
export { rankForm, useRankProducts } from './rank-product.js';
export {
  ATTN_DELTA,
  ATTN_GRAD,
  ATTN_OUT,
  ATTN_STATS,
  fusedAttentionAvailable,
  registerWebGpuAttention,
  useFusedAttention,
} from './attention.js';
export { DROPOUT, registerWebGpuDropout, fusedDropoutAvailable } from './dropout.js';
