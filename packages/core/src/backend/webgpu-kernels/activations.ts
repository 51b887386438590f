// The MLP activations as fused elementwise kernels on 'webgpu', forward and
// backward, one pass over memory each (tfjs's composed ops are ~6 kernels
// forward and ~12 backward for gelu_new, 3 and ~6 for SwiGLU, each a full
// read and write of the [N, F] activations):
//   LoraFleetGeluNew       x -> 0.5 x (1 + tanh(K (x + A x^3)))   (GPT-2's gelu_new)
//   LoraFleetGeluNewGrad   x, dy -> dx
//   LoraFleetSwiGlu        gate, up -> silu(gate) up              (Llama's MLP)
//   LoraFleetSwiGluGrad    gate, up, dy -> d gate or d up (attr `wrt`)
//   LoraFleetGeGlu         gate, up -> gelu_new(gate) up          (Gemma's MLP)
//   LoraFleetGeGluGrad     gate, up, dy -> d gate or d up (attr `wrt`)
// The gelu_new and SwiGLU kernels take the names the cpu and wasm kernels
// have (gelu-layer-norm.ts, swiglu.ts), so ops/gelu-new.ts and ops/gated.ts
// reach them the same way.
import { GELU_NEW, GELU_NEW_GRAD } from '../gelu-layer-norm.js';
import { SWIGLU, SWIGLU_GRAD } from '../swiglu.js';
import { tf } from '../tf.js';
import { webGpuMatMulChoice } from './matmul-kernel.js';
import {
  registerWebGpuKernels,
  type FlatDispatchUtil,
  type WebGpuKernelArgs,
  type WebGpuProgramRunner,
  elementwiseProgram,
} from './rows.js';

export { SWIGLU, SWIGLU_GRAD };
export const GEGLU = 'LoraFleetGeGlu';
export const GEGLU_GRAD = 'LoraFleetGeGluGrad';

type Info = tf.TensorInfo;
// WGSL, with v the input value. tanh through exp, clamped: WGSL's tanh is NaN
// beyond |u| ~ 44 on some drivers, and 1 - tanh^2 needs no more range.
const GELU_T = `
      let u = clamp(0.7978845608028654 * (v + 0.044715 * v * v * v), -15.0, 15.0);
      let e = exp(2.0 * u);
      let t = (e - 1.0) / (e + 1.0);`;
/** gelu_new'(v), after GELU_T. */
const DGELU = `let dgelu = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 0.134145 * v * v);`;
const SIGMOID = `let s = 1.0 / (1.0 + exp(-g));`;

/** The value each output element gets, per kernel: WGSL over the inputs at `index`. */
const BODIES = {
  [GELU_NEW]: {
    inputs: ['x'],
    code: `let v = x[index];${GELU_T}\n      let y = 0.5 * v * (1.0 + t);`,
  },
  [GELU_NEW_GRAD]: {
    inputs: ['x', 'dy'],
    code: `let v = x[index];${GELU_T}
      ${DGELU}
      let y = dy[index] * dgelu;`,
  },
  [SWIGLU]: {
    inputs: ['gate', 'up'],
    code: `let g = gate[index]; ${SIGMOID}\n      let y = g * s * up[index];`,
  },
  [`${SWIGLU_GRAD}_up`]: {
    inputs: ['gate', 'dy'],
    code: `let g = gate[index]; ${SIGMOID}\n      let y = dy[index] * g * s;`,
  },
  [`${SWIGLU_GRAD}_gate`]: {
    inputs: ['gate', 'up', 'dy'],
    code: `let g = gate[index]; ${SIGMOID}
      let y = dy[index] * up[index] * s * (1.0 + g * (1.0 - s));`,
  },
  [GEGLU]: {
    inputs: ['gate', 'up'],
    code: `let v = gate[index];${GELU_T}\n      let y = 0.5 * v * (1.0 + t) * up[index];`,
  },
  [`${GEGLU_GRAD}_up`]: {
    inputs: ['gate', 'dy'],
    code: `let v = gate[index];${GELU_T}\n      let y = dy[index] * 0.5 * v * (1.0 + t);`,
  },
  [`${GEGLU_GRAD}_gate`]: {
    inputs: ['gate', 'up', 'dy'],
    code: `let v = gate[index];${GELU_T}
      ${DGELU}
      let y = dy[index] * up[index] * dgelu;`,
  },
} as const;
type Body = keyof typeof BODIES;

function program(util: FlatDispatchUtil, body: Body, shape: number[]) {
  const { inputs, code } = BODIES[body];
  return elementwiseProgram(util, {
    shaderKey: `lorafleet_act_${body}`,
    variableNames: [...inputs],
    shape,
    body: `${code}
      setOutputAtIndex(index, y);`,
  });
}

function kernel(util: FlatDispatchUtil, choose: (args: WebGpuKernelArgs) => Body) {
  return (args: WebGpuKernelArgs): Info => {
    const body = choose(args);
    const inputs = BODIES[body].inputs.map((name) => args.inputs[name] as Info);
    const shape = inputs[0]!.shape;
    for (const [i, t] of inputs.entries()) {
      if (t.dtype !== 'float32' || t.shape.join() !== shape.join()) {
        throw new Error(
          `${body}: ${BODIES[body].inputs[i]} must be float32 [${shape}], got ${t.dtype} [${t.shape}]`,
        );
      }
    }
    const runner = args.backend as unknown as WebGpuProgramRunner;
    return runner.runWebGPUProgram(program(util, body, shape), inputs, 'float32');
  };
}

/** Registers the six kernels for 'webgpu' (once). */
export function registerWebGpuActivations(
  api: Pick<typeof tf, 'registerKernel' | 'getKernel'>,
  util: FlatDispatchUtil,
): void {
  const wrt = (args: WebGpuKernelArgs) => (args.attrs as { wrt: 'gate' | 'up' }).wrt;
  const kernels: [string, (args: WebGpuKernelArgs) => Info][] = [
    [GELU_NEW, kernel(util, () => GELU_NEW)],
    [GELU_NEW_GRAD, kernel(util, () => GELU_NEW_GRAD)],
    [SWIGLU, kernel(util, () => SWIGLU)],
    [SWIGLU_GRAD, kernel(util, (args) => `${SWIGLU_GRAD}_${wrt(args)}` as Body)],
    [GEGLU, kernel(util, () => GEGLU)],
    [GEGLU_GRAD, kernel(util, (args) => `${GEGLU_GRAD}_${wrt(args)}` as Body)],
  ];
  registerWebGpuKernels(api, kernels);
}

let enabled = true;

/** Turns the fused activations off on webgpu (tests compare them with tfjs's path), or on again. */
export function useFusedActivations(on: boolean): void {
  enabled = on;
}

/** True on webgpu with the project's kernels (not LORAFLEET_WEBGPU_KERNELS=stock). */
export function fusedActivationsAvailable(): boolean {
  return enabled && tf.getBackend() === 'webgpu' && webGpuMatMulChoice() === 'project';
}
