// RMSNorm over the last axis and its input gradient in f32x4, the wasm
// backend's LoraFleetRmsNorm / LoraFleetRmsNormGrad (the cpu backend runs the
// TypeScript reference, src/backend/rms-norm.ts). Pointers are addresses in
// tfjs-backend-wasm's heap. As in the reference, the row sums are float64
// (f64x2 accumulators); the elementwise terms are f32. The weight is frozen
// (LoRA): no gradient for it.
//   forward:  x [rows, C], gamma [C] -> y [rows, C], rstd [rows]
//   backward: x, gamma, rstd, dy -> dx [rows, C]
// With xhat = x rstd, rstd = 1 / sqrt(mean(x^2) + eps) and g = dy gamma:
//   y  = xhat gamma
//   dx = rstd (g - xhat mean(g xhat))

import { hi64, lo64, total } from './lib/f64-lanes';

/** The float64 sum over one row of a[c] b[c]. */
function dot(a: usize, b: usize, C: i32): f64 {
  let s0 = f64x2.splat(0);
  let s1 = f64x2.splat(0);
  let c = 0;
  for (; c + 4 <= C; c += 4) {
    const at = (<usize>c) << 2;
    const va = v128.load(a + at);
    const vb = v128.load(b + at);
    s0 = f64x2.add(s0, f64x2.mul(lo64(va), lo64(vb)));
    s1 = f64x2.add(s1, f64x2.mul(hi64(va), hi64(vb)));
  }
  let sum = total(s0, s1);
  for (; c < C; c++) {
    const at = (<usize>c) << 2;
    sum += <f64>load<f32>(a + at) * <f64>load<f32>(b + at);
  }
  return sum;
}

/** y = x rstd gamma per row; rstd per row is stored for the backward. */
export function rmsNorm(
  x: usize,
  gamma: usize,
  eps: f64,
  rows: i32,
  C: i32,
  y: usize,
  rstd: usize,
): void {
  const rowBytes = (<usize>C) << 2;
  for (let r = 0; r < rows; r++) {
    const p = x + <usize>r * rowBytes;
    const s = <f32>(1 / Math.sqrt(dot(p, p, C) / <f64>C + eps));
    const out = y + <usize>r * rowBytes;
    const sv = f32x4.splat(s);
    let c = 0;
    for (; c + 4 <= C; c += 4) {
      const at = (<usize>c) << 2;
      v128.store(out + at, f32x4.mul(f32x4.mul(v128.load(p + at), sv), v128.load(gamma + at)));
    }
    for (; c < C; c++) {
      const at = (<usize>c) << 2;
      store<f32>(out + at, load<f32>(p + at) * s * load<f32>(gamma + at));
    }
    store<f32>(rstd + ((<usize>r) << 2), s);
  }
}

/** dx = rstd (dy gamma - xhat mean(dy gamma xhat)) per row. */
export function rmsNormGrad(
  x: usize,
  gamma: usize,
  rstd: usize,
  dy: usize,
  rows: i32,
  C: i32,
  dx: usize,
): void {
  const rowBytes = (<usize>C) << 2;
  for (let r = 0; r < rows; r++) {
    const o = <usize>r * rowBytes;
    const s = load<f32>(rstd + ((<usize>r) << 2));
    const meanGX = <f32>((rowGx(x + o, gamma, dy + o, C) * <f64>s) / <f64>C);
    const sv = f32x4.splat(s);
    const mv = f32x4.splat(meanGX);
    let c = 0;
    for (; c + 4 <= C; c += 4) {
      const at = (<usize>c) << 2;
      const xhat = f32x4.mul(v128.load(x + o + at), sv);
      const g = f32x4.mul(v128.load(dy + o + at), v128.load(gamma + at));
      v128.store(dx + o + at, f32x4.mul(sv, f32x4.sub(g, f32x4.mul(xhat, mv))));
    }
    for (; c < C; c++) {
      const at = (<usize>c) << 2;
      const xhat = load<f32>(x + o + at) * s;
      const g = load<f32>(dy + o + at) * load<f32>(gamma + at);
      store<f32>(dx + o + at, s * (g - xhat * meanGX));
    }
  }
}

/** The float64 sum over one row of dy gamma x (times rstd: sum of g xhat). */
function rowGx(p: usize, gamma: usize, dy: usize, C: i32): f64 {
  let s0 = f64x2.splat(0);
  let s1 = f64x2.splat(0);
  let c = 0;
  for (; c + 4 <= C; c += 4) {
    const at = (<usize>c) << 2;
    const xv = v128.load(p + at);
    const g = f32x4.mul(v128.load(dy + at), v128.load(gamma + at));
    s0 = f64x2.add(s0, f64x2.mul(lo64(g), lo64(xv)));
    s1 = f64x2.add(s1, f64x2.mul(hi64(g), hi64(xv)));
  }
  let sum = total(s0, s1);
  for (; c < C; c++) {
    const at = (<usize>c) << 2;
    sum += <f64>(load<f32>(dy + at) * load<f32>(gamma + at)) * <f64>load<f32>(p + at);
  }
  return sum;
}
