// The single place where the project imports tfjs: the union package
// registers the cpu backend, the chained ops and every gradient; the wasm
// backend registers itself on import. Everything else imports `tf` from here
// (webgpu.ts and tfjs-node.ts import their optional packages on demand).
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { registerWasmKernels } from './wasm-kernels.js';
import { registerWasmMatMul } from './wasm-matmul.js';
import { registerUnpackBase } from './unpack-base.js';
import { registerStepKernels } from './step-kernels.js';
import { installSharedClone } from './saved-clone.js';

export { tf };
registerWasmKernels(tf); // kernels tfjs-backend-wasm lacks (UnsortedSegmentSum)
registerWasmMatMul(tf); // its transposed matmuls are 10-40x slower than explicit transposes
registerUnpackBase(tf); // --base-dtype bf16/f16/nf4: frozen weights stored packed
registerStepKernels(tf); // the step's fused loss, layernorm, gelu; wasm Identity without a copy
installSharedClone(tf); // tensors saved for backward: a shared reference, not a kernel run

// Production mode: no debug checks, and no banner urging tfjs-node on first use
// (the project chooses its backends itself).
tf.env().set('PROD', true);

// The backend switch (useBackend, BACKENDS) is in select.ts; the optional GPU
// backends load on demand there: webgpu.ts (Dawn + tfjs-backend-webgpu) and
// tfjs-node.ts (tfjs-node / tfjs-node-gpu when installed).
