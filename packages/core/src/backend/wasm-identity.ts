// tfjs-backend-wasm's Identity copies its input into a new heap buffer. The
// engine calls Identity (tensor.clone()) for every tensor a gradient saves
// for the backward pass, so a training step copied ~400 activations per step
// (8 x 128 tokens, 4 layers: ~0.4 s and ~1 GB of churn). tfjs tensors are
// immutable and the wasm backend reference-counts its buffers (its Reshape
// shares them), so Identity can share the buffer as the cpu backend's does.
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type { tf } from './tf.js';

const IDENTITY = 'Identity';

/** Identity without a copy: one more reference to x's buffer. */
export function identityWasm(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
}): tf.TensorInfo {
  const x = args.inputs.x;
  if (x === undefined) throw new Error('Identity (wasm): input x is required');
  (args.backend as unknown as BackendWasm).incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
}

/** Replaces wasm's copying Identity (strings keep the original). Idempotent. */
export function registerWasmIdentity(
  api: Pick<typeof tf, 'registerKernel' | 'getKernel' | 'unregisterKernel'>,
): boolean {
  const original = api.getKernel(IDENTITY, 'wasm');
  if (!original || (original as { lorafleetShared?: boolean }).lorafleetShared) return false;
  const copying = original.kernelFunc;
  const kernelFunc = (args: Parameters<typeof identityWasm>[0]) =>
    args.inputs.x?.dtype === 'string'
      ? copying(args as unknown as Parameters<tf.KernelFunc>[0])
      : identityWasm(args);
  api.unregisterKernel(IDENTITY, 'wasm');
  api.registerKernel({
    kernelName: IDENTITY,
    backendName: 'wasm',
    kernelFunc: kernelFunc as unknown as tf.KernelFunc,
  });
  Object.assign(api.getKernel(IDENTITY, 'wasm')!, { lorafleetShared: true });
  return true;
}
