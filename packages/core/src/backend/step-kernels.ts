// The training step's own kernels beyond tfjs's (issue 17: the CPU step at
// the roofline), registered from tf.ts in one call: the fused softmax
// cross-entropy and TRL's token metrics, gelu_new, LayerNorm, SwiGLU, RMSNorm and the rotary embedding
// (cpu, wasm), wasm's copy-free
// Identity, and wasm's Slice and SplitV over heap views (wasm-slice.ts).
import { GELU_LAYER_NORM_KERNELS } from './gelu-layer-norm.js';
import { RMS_NORM_KERNELS } from './rms-norm.js';
import { ROTARY_KERNELS } from './rotary.js';
import { SOFTMAX_XENT_KERNELS } from './softmax-xent.js';
import { SWIGLU_KERNELS } from './swiglu.js';
import { TOKEN_STATS_KERNELS } from './token-stats.js';
import type { tf } from './tf.js';
import { registerWasmIdentity } from './wasm-identity.js';
import { registerWasmSlice } from './wasm-slice.js';

const STEP_KERNELS: readonly tf.KernelConfig[] = [
  ...SOFTMAX_XENT_KERNELS,
  ...TOKEN_STATS_KERNELS,
  ...GELU_LAYER_NORM_KERNELS,
  ...SWIGLU_KERNELS,
  ...RMS_NORM_KERNELS,
  ...ROTARY_KERNELS,
];

/** Registers what is not registered yet; idempotent. Returns the names added. */
export function registerStepKernels(
  api: Pick<
    typeof tf,
    'registerKernel' | 'getKernel' | 'unregisterKernel' | 'slice_util' | 'backend_util' | 'util'
  >,
): string[] {
  const added: string[] = [];
  for (const config of STEP_KERNELS) {
    if (api.getKernel(config.kernelName, config.backendName) !== undefined) continue;
    api.registerKernel(config);
    added.push(`${config.kernelName} (${config.backendName})`);
  }
  if (registerWasmIdentity(api)) added.push('Identity (wasm, shared buffer)');
  added.push(...registerWasmSlice(api));
  return added;
}
