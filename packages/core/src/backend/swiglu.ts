// SwiGLU, silu(gate) * up (the Llama family's MLP), as fused kernels on cpu
// and wasm, forward and backward: composed from tfjs ops it is ~3 kernels
// forward and ~10 backward over [N, F] tensors; fused, one pass each (two
// backward, one per input, as webgpu's kernels of the same names). On wasm
// they run as SIMD128 code in the heap (assembly/swiglu.ts through
// simd/step-kernels.ts); the TypeScript loops here are the cpu backend's
// kernels, the reference, and wasm's fallback.
//   LoraFleetSwiGlu      gate, up -> y
//   LoraFleetSwiGluGrad  gate, up, dy -> d gate or d up (attr `wrt`)
import {
  type HostKernelMaker,
  type KernelArgs,
  float32Inputs,
  hostKernelConfigs,
} from './gelu-layer-norm.js';
import { HOST_MEMORY } from './host-memory.js';
import { simdSwiglu, simdSwigluGrad } from './simd/step-kernels.js';
import type { HostKernelConfig } from './softmax-xent.js';
import type { tf } from './tf.js';

export const SWIGLU = 'LoraFleetSwiGlu';
export const SWIGLU_GRAD = 'LoraFleetSwiGluGrad';

/** y = g s u, s = sigmoid(g), elementwise (float64 arithmetic, float32 store). */
export function swigluInto(g: ArrayLike<number>, u: ArrayLike<number>, y: Float32Array): void {
  for (let i = 0; i < y.length; i++) {
    const gi = g[i]!;
    y[i] = (gi / (1 + Math.exp(-gi))) * u[i]!;
  }
}

/** d/d up = dy g s; d/d gate = dy u s (1 + g (1 - s)). */
export function swigluGradInto(
  g: ArrayLike<number>,
  u: ArrayLike<number>,
  dy: ArrayLike<number>,
  wrt: 'gate' | 'up',
  out: Float32Array,
): void {
  for (let i = 0; i < out.length; i++) {
    const gi = g[i]!;
    const s = 1 / (1 + Math.exp(-gi));
    out[i] = wrt === 'up' ? dy[i]! * gi * s : dy[i]! * u[i]! * s * (1 + gi * (1 - s));
  }
}

/** gate, up (and dy) of one shape, float32. */
function sameShaped(kernel: string, args: KernelArgs, names: string[]): tf.TensorInfo[] {
  const inputs = float32Inputs(kernel, args, names);
  const shape = inputs[0]!.shape.join(', ');
  for (const [i, t] of inputs.entries()) {
    if (t.shape.join(', ') !== shape)
      throw new Error(`${kernel}: ${names[i]} is [${t.shape.join(', ')}], gate [${shape}]`);
  }
  return inputs;
}

const KERNELS: Record<string, HostKernelMaker> = {
  [SWIGLU]: (b, simd) => (args) => {
    const [gate, up] = sameShaped(SWIGLU, args, ['gate', 'up']) as [tf.TensorInfo, tf.TensorInfo];
    const out = [{ shape: gate.shape, dtype: 'float32' as const }];
    const { infos, outs, ins } = HOST_MEMORY[b](args.backend, out, [gate, up]);
    if (simd && simdSwiglu(args.backend, gate, up, infos[0]!)) return infos[0]!;
    swigluInto(ins[0]!, ins[1]!, outs[0] as Float32Array);
    return infos[0]!;
  },
  [SWIGLU_GRAD]: (b, simd) => (args) => {
    const names = ['gate', 'up', 'dy'];
    const [gate, up, dy] = sameShaped(SWIGLU_GRAD, args, names) as tf.TensorInfo[];
    const wrt = (args.attrs as { wrt?: unknown } | undefined)?.wrt;
    if (wrt !== 'gate' && wrt !== 'up')
      throw new Error(`${SWIGLU_GRAD}: attr wrt must be "gate" or "up", got ${String(wrt)}`);
    const out = [{ shape: gate!.shape, dtype: 'float32' as const }];
    const { infos, outs, ins } = HOST_MEMORY[b](args.backend, out, [gate!, up!, dy!]);
    const inputs = { gate: gate!, up: up!, dy: dy! };
    if (simd && simdSwigluGrad(args.backend, inputs, wrt, infos[0]!)) return infos[0]!;
    swigluGradInto(ins[0]!, ins[1]!, ins[2]!, wrt, outs[0] as Float32Array);
    return infos[0]!;
  },
};

/** The two kernels on cpu and wasm. */
export const SWIGLU_KERNELS: readonly HostKernelConfig[] = hostKernelConfigs(KERNELS);
