// The training step's own kernels beyond tfjs's (issue 17: the CPU step at
// the roofline), registered from tf.ts in one call: the fused softmax
// cross-entropy, gelu_new and LayerNorm (cpu, wasm) and wasm's copy-free
// Identity.
import { GELU_LAYER_NORM_KERNELS } from './gelu-layer-norm.js';
import { SOFTMAX_XENT_KERNELS } from './softmax-xent.js';
import type { tf } from './tf.js';
import { registerWasmIdentity } from './wasm-identity.js';

const STEP_KERNELS: readonly tf.KernelConfig[] = [
  ...SOFTMAX_XENT_KERNELS,
  ...GELU_LAYER_NORM_KERNELS,
];

/** Registers what is not registered yet; idempotent. Returns the names added. */
export function registerStepKernels(
  api: Pick<typeof tf, 'registerKernel' | 'getKernel' | 'unregisterKernel'>,
): string[] {
  const added: string[] = [];
  for (const config of STEP_KERNELS) {
    if (api.getKernel(config.kernelName, config.backendName) !== undefined) continue;
    api.registerKernel(config);
    added.push(`${config.kernelName} (${config.backendName})`);
  }
  if (registerWasmIdentity(api)) added.push('Identity (wasm, shared buffer)');
  return added;
}
