// The single place where the project touches tfjs's global registration: the
// union package registers the cpu backend, the chained ops and every gradient;
// the wasm backend registers itself on import. Everything else imports `tf`
// from here.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { registerWasmKernels } from './wasm-kernels.js';
import { registerWasmMatMul } from './wasm-matmul.js';

export { tf };
registerWasmKernels(tf); // kernels tfjs-backend-wasm lacks (UnsortedSegmentSum)
registerWasmMatMul(tf); // its transposed matmuls are 10-40x slower than explicit transposes

// Production mode: no debug checks, and no banner urging tfjs-node on first use
// (the project chooses its backends itself).
tf.env().set('PROD', true);

/** Compute backends this package can start by itself; webgpu and tfjs-node join later. */
export type BackendName = 'wasm' | 'cpu';
export const BACKENDS: readonly BackendName[] = ['wasm', 'cpu'];

/**
 * Selects and initialises a tfjs backend. Throws with the list of known
 * backends for an unknown name, so a typo on the command line is obvious.
 */
export async function useBackend(name: BackendName): Promise<void> {
  if (!BACKENDS.includes(name)) {
    throw new Error(
      `unknown compute backend "${String(name)}": choose one of ${BACKENDS.join(', ')}`,
    );
  }
  const ok = await tf.setBackend(name);
  await tf.ready();
  if (!ok || tf.getBackend() !== name) {
    throw new Error(`the "${name}" backend failed to initialise (tfjs reports ${tf.getBackend()})`);
  }
}
