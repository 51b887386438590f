// GPT-2's gelu_new and its gradient in f32x4, the wasm backend's
// LoraFleetGeluNew / LoraFleetGeluNewGrad (the cpu backend runs the
// TypeScript reference, src/backend/gelu-layer-norm.ts). Pointers are
// addresses in tfjs-backend-wasm's heap.
//
// gelu_new(x) = 0.5 x (1 + tanh(u)), u = K (x + A x^3). With
// s = sigmoid(2u) = 1 / (1 + e), e = exp(-2u): 0.5 (1 + tanh u) = s and
// 1 - tanh(u)^2 = 4 s (1 - s) = 4 s (e s), so
//   y     = x s
//   dy/dx = s (1 + 2 x (e s) K (1 + 3 A x^2)).
// One exp and one division per element, and every factor is accurate
// relative to itself: no 1 - tanh^2 cancellation where |u| is large (the
// TypeScript kernel switches to Math.tanh there for the same reason).
import { expf4 } from './lib/vector-math';

const K: f32 = 0.7978845608028654; // sqrt(2 / pi)
const A: f32 = 0.044715;

/** y = gelu_new(x) of one f32x4. */
function gelu4(x: v128): v128 {
  const x2 = f32x4.mul(x, x);
  const u = f32x4.mul(x, f32x4.add(f32x4.splat(K), f32x4.mul(f32x4.splat(K * A), x2)));
  const e = expf4(f32x4.mul(u, f32x4.splat(-2)));
  return f32x4.div(x, f32x4.add(f32x4.splat(1), e));
}

/** dx = dy * gelu_new'(x) of one f32x4. */
function geluGrad4(x: v128, dy: v128): v128 {
  const x2 = f32x4.mul(x, x);
  const u = f32x4.mul(x, f32x4.add(f32x4.splat(K), f32x4.mul(f32x4.splat(K * A), x2)));
  const e = expf4(f32x4.mul(u, f32x4.splat(-2)));
  const s = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), e));
  const du = f32x4.add(f32x4.splat(K), f32x4.mul(f32x4.splat(3 * K * A), x2)); // du/dx
  const t = f32x4.mul(f32x4.mul(f32x4.add(x, x), f32x4.mul(e, s)), du);
  return f32x4.mul(dy, f32x4.mul(s, f32x4.add(f32x4.splat(1), t)));
}

/** y[i] = gelu_new(x[i]) for i < n (y may be x). */
export function geluNew(x: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const at = (<usize>i) << 2;
    v128.store(y + at, gelu4(v128.load(x + at)));
  }
  for (; i < n; i++) {
    const at = (<usize>i) << 2;
    store<f32>(y + at, f32x4.extract_lane(gelu4(f32x4.splat(load<f32>(x + at))), 0));
  }
}

/** dx[i] = dy[i] gelu_new'(x[i]) for i < n. */
export function geluNewGrad(x: usize, dy: usize, dx: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const at = (<usize>i) << 2;
    v128.store(dx + at, geluGrad4(v128.load(x + at), v128.load(dy + at)));
  }
  for (; i < n; i++) {
    const at = (<usize>i) << 2;
    const g = geluGrad4(f32x4.splat(load<f32>(x + at)), f32x4.splat(load<f32>(dy + at)));
    store<f32>(dx + at, f32x4.extract_lane(g, 0));
  }
}
