// The rotary embedding, rotate-half convention (the Llama family's q and k),
// as one fused kernel on cpu and wasm: composed from tfjs ops it is a split,
// a negation, a concat, two products and an add forward, about as many
// backward, over [B, H, T, D]; fused, one pass, and the gradient is the same
// kernel with the rotation inverted. Each output is a product, a product and
// one add or subtract in float32, the operations (and so the bits) of the
// tfjs ops. On wasm it runs as SIMD128 code in the heap (assembly/rotary.ts
// through simd/step-kernels.ts); the TypeScript loop here is the cpu
// backend's kernel, the reference, and wasm's fallback.
//   LoraFleetRotary  x [B, H, T, D], cos, sin [Bc, 1, T, D] (Bc 1 or B), attr inverse -> y
import {
  type HostKernelMaker,
  type KernelArgs,
  float32Inputs,
  hostKernelConfigs,
} from './gelu-layer-norm.js';
import { HOST_MEMORY } from './host-memory.js';
import { simdRotary } from './simd/step-kernels.js';
import type { HostKernelConfig } from './softmax-xent.js';
import type { tf } from './tf.js';

export const ROTARY = 'LoraFleetRotary';

const f = Math.fround;

/** The rotary kernel's sizes: x [B, H, T, D], tables [Bc, 1, T, D]. */
export interface RotaryShape {
  B: number;
  H: number;
  T: number;
  D: number;
  /** 1: one table for every batch row; else B. */
  tableBatch: number;
}

/**
 * Each row of D: y1 = x1 c1 - x2 s1, y2 = x2 c2 + x1 s2 (x cos + rotate_half(x) sin),
 * or with `inverse` its transpose, y1 = x1 c1 + x2 s2, y2 = x2 c2 - x1 s1.
 */
export function rotaryInto(
  x: ArrayLike<number>,
  cos: ArrayLike<number>,
  sin: ArrayLike<number>,
  { B, H, T, D, tableBatch }: RotaryShape,
  inverse: boolean,
  y: Float32Array,
): void {
  const half = D / 2;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const o = ((b * H + h) * T + t) * D;
        const at = ((tableBatch === 1 ? 0 : b) * T + t) * D;
        for (let j = 0; j < half; j++) {
          const [x1, x2] = [x[o + j]!, x[o + half + j]!];
          const [c1, c2, s1, s2] = [
            cos[at + j]!,
            cos[at + half + j]!,
            sin[at + j]!,
            sin[at + half + j]!,
          ];
          y[o + j] = inverse ? f(f(x1 * c1) + f(x2 * s2)) : f(f(x1 * c1) - f(x2 * s1));
          y[o + half + j] = inverse ? f(f(x2 * c2) - f(x1 * s1)) : f(f(x2 * c2) + f(x1 * s2));
        }
      }
    }
  }
}

/** The sizes of x and its tables, or null where the kernel does not apply (it rotates all of an even D). */
export function rotaryShape(x: readonly number[], table: readonly number[]): RotaryShape | null {
  if (x.length !== 4 || table.length !== 4) return null;
  const [B, H, T, D] = x as [number, number, number, number];
  const [Bc, one, Tc, Dc] = table as [number, number, number, number];
  if (D % 2 !== 0 || Dc !== D || Tc !== T || one !== 1 || (Bc !== 1 && Bc !== B)) return null;
  return { B, H, T, D, tableBatch: Bc };
}

const KERNELS: Record<string, HostKernelMaker> = {
  [ROTARY]: (b, simd) => (args: KernelArgs) => {
    const [x, cos, sin] = float32Inputs(ROTARY, args, ['x', 'cos', 'sin']) as tf.TensorInfo[];
    const shape = rotaryShape(x!.shape, cos!.shape);
    if (shape === null || sin!.shape.join() !== cos!.shape.join()) {
      throw new Error(
        `${ROTARY}: x must be [B, H, T, D] (D even) with cos and sin [1 or B, 1, T, D]; ` +
          `got x [${x!.shape.join(', ')}], cos [${cos!.shape.join(', ')}], sin [${sin!.shape.join(', ')}]`,
      );
    }
    const inverse = (args.attrs as { inverse?: unknown } | undefined)?.inverse === true;
    const { infos, outs, ins } = HOST_MEMORY[b](
      args.backend,
      [{ shape: x!.shape, dtype: 'float32' }],
      [x!, cos!, sin!],
    );
    if (
      simd &&
      simdRotary(args.backend, { x: x!, cos: cos!, sin: sin! }, shape, inverse, infos[0]!)
    )
      return infos[0]!;
    rotaryInto(ins[0]!, ins[1]!, ins[2]!, shape, inverse, outs[0] as Float32Array);
    return infos[0]!;
  },
};

/** The kernel on cpu and wasm. */
export const ROTARY_KERNELS: readonly HostKernelConfig[] = hostKernelConfigs(KERNELS);
