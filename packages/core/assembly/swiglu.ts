// SwiGLU (silu(gate) * up, the Llama family's MLP) and its gradient in
// f32x4, the wasm backend's LoraFleetSwiGlu / LoraFleetSwiGluGrad (the cpu
// backend runs the TypeScript reference, src/backend/swiglu.ts). Pointers are
// addresses in tfjs-backend-wasm's heap.
//
// With s = sigmoid(g) = 1 / (1 + exp(-g)):
//   y       = g s u
//   d/d up  = dy g s
//   d/d g   = dy u s (1 + g (1 - s))
// One exp and one division per element; exp(-g) overflowing to +inf for a
// very negative g gives s = 0 and every term 0, as the limit is.
import { expf4 } from './lib/vector-math';

/** s = sigmoid(g) of one f32x4. */
function sigmoid4(g: v128): v128 {
  return f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), expf4(f32x4.neg(g))));
}

function swiglu4(g: v128, u: v128): v128 {
  return f32x4.mul(f32x4.mul(g, sigmoid4(g)), u);
}

/** d/d gate (wrtGate) or d/d up of one f32x4. */
function swigluGrad4(g: v128, u: v128, dy: v128, wrtGate: bool): v128 {
  const s = sigmoid4(g);
  if (!wrtGate) return f32x4.mul(dy, f32x4.mul(g, s));
  const slope = f32x4.add(f32x4.splat(1), f32x4.mul(g, f32x4.sub(f32x4.splat(1), s)));
  return f32x4.mul(f32x4.mul(dy, u), f32x4.mul(s, slope));
}

/** y[i] = silu(gate[i]) up[i] for i < n. */
export function swiglu(gate: usize, up: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const at = (<usize>i) << 2;
    v128.store(y + at, swiglu4(v128.load(gate + at), v128.load(up + at)));
  }
  for (; i < n; i++) {
    const at = (<usize>i) << 2;
    const v = swiglu4(f32x4.splat(load<f32>(gate + at)), f32x4.splat(load<f32>(up + at)));
    store<f32>(y + at, f32x4.extract_lane(v, 0));
  }
}

/** out[i] = d(sum dy y)/d gate[i] (wrtGate = 1) or / d up[i] (0), for i < n. */
export function swigluGrad(
  gate: usize,
  up: usize,
  dy: usize,
  out: usize,
  n: i32,
  wrtGate: i32,
): void {
  const g = wrtGate != 0;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const at = (<usize>i) << 2;
    const v = swigluGrad4(v128.load(gate + at), v128.load(up + at), v128.load(dy + at), g);
    v128.store(out + at, v);
  }
  for (; i < n; i++) {
    const at = (<usize>i) << 2;
    const gi = f32x4.splat(load<f32>(gate + at));
    const ui = f32x4.splat(load<f32>(up + at));
    const v = swigluGrad4(gi, ui, f32x4.splat(load<f32>(dy + at)), g);
    store<f32>(out + at, f32x4.extract_lane(v, 0));
  }
}
