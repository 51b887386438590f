// LayerNorm over the last axis and its gradient in f32x4, the wasm backend's
// LoraFleetLayerNorm / LoraFleetLayerNormGrad (the cpu backend runs the
// TypeScript reference, src/backend/gelu-layer-norm.ts). Pointers are
// addresses in tfjs-backend-wasm's heap. As in the reference, every sum is
// float64 (f64x2 accumulators): the row's mean and variance, the backward's
// two row sums, and dgamma / dbeta over the rows (in the caller's scratch,
// layerNormGradScratchBytes); the elementwise terms are f32.
//   forward:  x [rows, C], gamma, beta [C] -> y [rows, C], mean, rstd [rows]
//   backward: x, gamma, mean, rstd, dy -> dx [rows, C], dgamma, dbeta [C]

import { hi64, lo64, total } from './lib/f64-lanes';

/**
 * y = (x - mean) rstd gamma + beta per row, with the biased variance and
 * rstd = 1 / sqrt(var + eps); mean and rstd per row are stored for the backward.
 */
export function layerNorm(
  x: usize,
  gamma: usize,
  beta: usize,
  eps: f64,
  rows: i32,
  C: i32,
  y: usize,
  mean: usize,
  rstd: usize,
): void {
  const rowBytes = (<usize>C) << 2;
  for (let r = 0; r < rows; r++) {
    const p = x + <usize>r * rowBytes;
    let a = f64x2.splat(0);
    let b = f64x2.splat(0);
    let c = 0;
    for (; c + 4 <= C; c += 4) {
      const v = v128.load(p + ((<usize>c) << 2));
      a = f64x2.add(a, lo64(v));
      b = f64x2.add(b, hi64(v));
    }
    let sum = total(a, b);
    for (; c < C; c++) sum += <f64>load<f32>(p + ((<usize>c) << 2));
    const m = sum / <f64>C;
    const mv = f64x2.splat(m);
    a = f64x2.splat(0);
    b = f64x2.splat(0);
    for (c = 0; c + 4 <= C; c += 4) {
      const v = v128.load(p + ((<usize>c) << 2));
      const d0 = f64x2.sub(lo64(v), mv);
      const d1 = f64x2.sub(hi64(v), mv);
      a = f64x2.add(a, f64x2.mul(d0, d0));
      b = f64x2.add(b, f64x2.mul(d1, d1));
    }
    let sq = total(a, b);
    for (; c < C; c++) {
      const d = <f64>load<f32>(p + ((<usize>c) << 2)) - m;
      sq += d * d;
    }
    const s = 1 / Math.sqrt(sq / <f64>C + eps);
    normalizeRow(p, gamma, beta, <f32>m, <f32>s, C, y + <usize>r * rowBytes);
    store<f32>(mean + ((<usize>r) << 2), <f32>m);
    store<f32>(rstd + ((<usize>r) << 2), <f32>s);
  }
}

/** out = (x - m) s gamma + beta over one row, f32. */
function normalizeRow(
  p: usize,
  gamma: usize,
  beta: usize,
  m: f32,
  s: f32,
  C: i32,
  out: usize,
): void {
  const mv = f32x4.splat(m);
  const sv = f32x4.splat(s);
  let c = 0;
  for (; c + 4 <= C; c += 4) {
    const at = (<usize>c) << 2;
    const xhat = f32x4.mul(f32x4.sub(v128.load(p + at), mv), sv);
    v128.store(out + at, f32x4.add(f32x4.mul(xhat, v128.load(gamma + at)), v128.load(beta + at)));
  }
  for (; c < C; c++) {
    const at = (<usize>c) << 2;
    store<f32>(
      out + at,
      (load<f32>(p + at) - m) * s * load<f32>(gamma + at) + load<f32>(beta + at),
    );
  }
}

/** Bytes of scratch that layerNormGrad needs: dgamma and dbeta in float64. */
export function layerNormGradScratchBytes(C: i32): i32 {
  return C * 16;
}

/**
 * With xhat = (x - mean) rstd and g = dy gamma, per row:
 * dx = rstd (g - mean(g) - xhat mean(g xhat)); dgamma = sum over rows of
 * dy xhat, dbeta = sum over rows of dy. scratch: layerNormGradScratchBytes(C).
 */
export function layerNormGrad(
  x: usize,
  gamma: usize,
  mean: usize,
  rstd: usize,
  dy: usize,
  rows: i32,
  C: i32,
  dx: usize,
  dgamma: usize,
  dbeta: usize,
  scratch: usize,
): void {
  const sumDg = scratch; // [C] f64
  const sumDb = scratch + ((<usize>C) << 3); // [C] f64
  memory.fill(scratch, 0, (<usize>C) << 4);
  const rowBytes = (<usize>C) << 2;
  for (let r = 0; r < rows; r++) {
    const o = <usize>r * rowBytes;
    const m = load<f32>(mean + ((<usize>r) << 2));
    const s = load<f32>(rstd + ((<usize>r) << 2));
    const sums = gradRowSums(x + o, gamma, dy + o, m, s, C, sumDg, sumDb);
    const meanG = <f32>(f64x2.extract_lane(sums, 0) / <f64>C);
    const meanGX = <f32>(f64x2.extract_lane(sums, 1) / <f64>C);
    gradRowDx(x + o, gamma, dy + o, m, s, meanG, meanGX, C, dx + o);
  }
  for (let c = 0; c < C; c++) {
    store<f32>(dgamma + ((<usize>c) << 2), <f32>load<f64>(sumDg + ((<usize>c) << 3)));
    store<f32>(dbeta + ((<usize>c) << 2), <f32>load<f64>(sumDb + ((<usize>c) << 3)));
  }
}

/**
 * One row's sum of g and of g xhat (lanes 0 and 1 of the result), adding
 * dy xhat and dy into the column sums, all in float64 as the reference
 * does: dgamma sums terms of both signs, where f32 products (~1e-7 each)
 * measured 1e-6 of the result apart from the reference after 64 rows.
 */
function gradRowSums(
  p: usize,
  gamma: usize,
  dy: usize,
  m: f32,
  s: f32,
  C: i32,
  sumDg: usize,
  sumDb: usize,
): v128 {
  const mv = f64x2.splat(<f64>m);
  const sv = f64x2.splat(<f64>s);
  let sg = f64x2.splat(0);
  let sgx = f64x2.splat(0);
  let c = 0;
  for (; c + 4 <= C; c += 4) {
    const at = (<usize>c) << 2;
    const xv = v128.load(p + at);
    const dv = v128.load(dy + at);
    const gv = v128.load(gamma + at);
    for (let half = 0; half < 2; half++) {
      const x = half == 0 ? lo64(xv) : hi64(xv);
      const d = half == 0 ? lo64(dv) : hi64(dv);
      const g = f64x2.mul(d, half == 0 ? lo64(gv) : hi64(gv));
      const xhat = f64x2.mul(f64x2.sub(x, mv), sv);
      sg = f64x2.add(sg, g);
      sgx = f64x2.add(sgx, f64x2.mul(g, xhat));
      const at64 = ((<usize>c) << 3) + ((<usize>half) << 4);
      v128.store(sumDg + at64, f64x2.add(v128.load(sumDg + at64), f64x2.mul(d, xhat)));
      v128.store(sumDb + at64, f64x2.add(v128.load(sumDb + at64), d));
    }
  }
  let sumG = f64x2.extract_lane(sg, 0) + f64x2.extract_lane(sg, 1);
  let sumGX = f64x2.extract_lane(sgx, 0) + f64x2.extract_lane(sgx, 1);
  for (; c < C; c++) {
    const at = (<usize>c) << 2;
    const at64 = (<usize>c) << 3;
    const xhat = (<f64>load<f32>(p + at) - <f64>m) * <f64>s;
    const d = <f64>load<f32>(dy + at);
    const g = d * <f64>load<f32>(gamma + at);
    sumG += g;
    sumGX += g * xhat;
    store<f64>(sumDg + at64, load<f64>(sumDg + at64) + d * xhat);
    store<f64>(sumDb + at64, load<f64>(sumDb + at64) + d);
  }
  return f64x2.replace_lane(f64x2.splat(sumG), 1, sumGX);
}

/** dx = s (dy gamma - meanG - xhat meanGX) over one row, f32. */
function gradRowDx(
  p: usize,
  gamma: usize,
  dy: usize,
  m: f32,
  s: f32,
  meanG: f32,
  meanGX: f32,
  C: i32,
  out: usize,
): void {
  const mv = f32x4.splat(m);
  const sv = f32x4.splat(s);
  const mg = f32x4.splat(meanG);
  const mgx = f32x4.splat(meanGX);
  let c = 0;
  for (; c + 4 <= C; c += 4) {
    const at = (<usize>c) << 2;
    const xhat = f32x4.mul(f32x4.sub(v128.load(p + at), mv), sv);
    const g = f32x4.mul(v128.load(dy + at), v128.load(gamma + at));
    const inner = f32x4.sub(f32x4.sub(g, mg), f32x4.mul(xhat, mgx));
    v128.store(out + at, f32x4.mul(sv, inner));
  }
  for (; c < C; c++) {
    const at = (<usize>c) << 2;
    const xhat = (load<f32>(p + at) - m) * s;
    const g = load<f32>(dy + at) * load<f32>(gamma + at);
    store<f32>(out + at, s * (g - meanG - xhat * meanGX));
  }
}
