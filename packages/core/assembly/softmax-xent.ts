// Fused softmax cross-entropy over the vocabulary in f32x4, the wasm
// backend's LoraFleetSoftmaxXent / LoraFleetSoftmaxXentGrad (the cpu backend
// runs the TypeScript reference, src/backend/softmax-xent.ts). Every pointer
// is an address in tfjs-backend-wasm's heap; the module writes only the
// outputs it is given.
//   forward:  logits [N, V] f32, labels [N] i32 -> nll [N], lse [N]
//   backward: logits, labels, lse, dnll -> dlogits [N, V]
// Rows need not be 16-byte aligned (V odd): wasm's v128 loads allow that.
// exp runs in f32x4 (lib/vector-math.ts, ~1 ulp); the row sum of exps is
// float64 (two f64x2 accumulators), so it adds no error of its own that
// grows with V; the log and lse are float64 until stored.
import { expf4, log64 } from './lib/vector-math';

/**
 * Largest logit of a row of `vocab` floats at p (f32x4 pmax, then the tail).
 * NaNs are passed over, as the reference's `>` does; exp(NaN - max) then
 * makes the row's sum NaN.
 */
function rowMax(p: usize, vocab: i32): f32 {
  let m = f32x4.splat(-Infinity);
  let v = 0;
  for (; v + 4 <= vocab; v += 4) m = f32x4.pmax(m, v128.load(p + ((<usize>v) << 2)));
  let best = f32x4.extract_lane(m, 0);
  best = greater(best, f32x4.extract_lane(m, 1));
  best = greater(best, f32x4.extract_lane(m, 2));
  best = greater(best, f32x4.extract_lane(m, 3));
  for (; v < vocab; v++) best = greater(best, load<f32>(p + ((<usize>v) << 2)));
  return best;
}

/** b where b > a, else a (a NaN b is passed over). */
function greater(a: f32, b: f32): f32 {
  return b > a ? b : a;
}

/** sum over the row of exp(x - shift), in float64. */
function rowSumExp(p: usize, vocab: i32, shift: f32): f64 {
  const s = f32x4.splat(shift);
  let lo = f64x2.splat(0);
  let hi = f64x2.splat(0);
  let v = 0;
  for (; v + 4 <= vocab; v += 4) {
    const e = expf4(f32x4.sub(v128.load(p + ((<usize>v) << 2)), s));
    lo = f64x2.add(lo, f64x2.promote_low_f32x4(e));
    hi = f64x2.add(hi, f64x2.promote_low_f32x4(v128.shuffle<f32>(e, e, 2, 3, 2, 3)));
  }
  let sum = f64x2.extract_lane(lo, 0) + f64x2.extract_lane(hi, 0);
  sum += f64x2.extract_lane(lo, 1) + f64x2.extract_lane(hi, 1);
  for (; v < vocab; v++) {
    const x = f32x4.splat(load<f32>(p + ((<usize>v) << 2)) - shift);
    sum += <f64>f32x4.extract_lane(expf4(x), 0);
  }
  return sum;
}

/**
 * Per row n: lse[n] = log sum_v exp(logits[n, v]), nll[n] = lse[n] -
 * logits[n, labels[n]]; both 0 where labels[n] < 0. The caller checks that
 * every label is below vocab.
 */
export function softmaxXent(
  logits: usize,
  labels: usize,
  rows: i32,
  vocab: i32,
  nll: usize,
  lse: usize,
): void {
  const rowBytes = (<usize>vocab) << 2;
  for (let n = 0; n < rows; n++) {
    const at = (<usize>n) << 2;
    const label = load<i32>(labels + at);
    if (label < 0) {
      store<f32>(nll + at, 0);
      store<f32>(lse + at, 0);
      continue;
    }
    const p = logits + <usize>n * rowBytes;
    const top = rowMax(p, vocab);
    const logSumExp = <f64>top + log64(rowSumExp(p, vocab, top));
    store<f32>(lse + at, <f32>logSumExp);
    store<f32>(nll + at, <f32>(logSumExp - <f64>load<f32>(p + ((<usize>label) << 2))));
  }
}

/**
 * dlogits[n, v] = g (exp(logits[n, v] - lse[n]) - [v == labels[n]]), with
 * g = dnll[n * dnllStride] (stride 0: one scalar for every row); 0 on rows
 * whose label is negative.
 */
export function softmaxXentGrad(
  logits: usize,
  labels: usize,
  lse: usize,
  dnll: usize,
  dnllStride: i32,
  rows: i32,
  vocab: i32,
  dlogits: usize,
): void {
  const rowBytes = (<usize>vocab) << 2;
  for (let n = 0; n < rows; n++) {
    const label = load<i32>(labels + ((<usize>n) << 2));
    const p = logits + <usize>n * rowBytes;
    const out = dlogits + <usize>n * rowBytes;
    if (label < 0) {
      memory.fill(out, 0, rowBytes);
      continue;
    }
    const g = load<f32>(dnll + ((<usize>(n * dnllStride)) << 2));
    const shift = load<f32>(lse + ((<usize>n) << 2));
    const gv = f32x4.splat(g);
    const sv = f32x4.splat(shift);
    let v = 0;
    for (; v + 4 <= vocab; v += 4) {
      const at = (<usize>v) << 2;
      v128.store(out + at, f32x4.mul(gv, expf4(f32x4.sub(v128.load(p + at), sv))));
    }
    for (; v < vocab; v++) {
      const at = (<usize>v) << 2;
      const e = expf4(f32x4.splat(load<f32>(p + at) - shift));
      store<f32>(out + at, g * f32x4.extract_lane(e, 0));
    }
    const at = (<usize>label) << 2;
    store<f32>(out + at, load<f32>(out + at) - g);
  }
}

/**
 * TRL's token metrics per row n (src/backend/token-stats.ts is the
 * reference): out[2n] = 1 where the row's first largest logit is at
 * labels[n], else 0; out[2n + 1] = the entropy of softmax(row), as
 * log(sum e) - sum(e d) / sum(e) with d = x - max, e = exp(d) (sums in
 * float64). Both 0 where labels[n] < 0. Every label is below vocab.
 */
export function tokenStats(logits: usize, labels: usize, rows: i32, vocab: i32, out: usize): void {
  const rowBytes = (<usize>vocab) << 2;
  for (let n = 0; n < rows; n++) {
    const at = (<usize>n) << 3;
    const label = load<i32>(labels + ((<usize>n) << 2));
    if (label < 0) {
      store<f32>(out + at, 0);
      store<f32>(out + at + 4, 0);
      continue;
    }
    const p = logits + <usize>n * rowBytes;
    const top = rowMax(p, vocab);
    store<f32>(out + at, firstMaxAt(p, label, top) ? 1 : 0);
    const s = f32x4.splat(top);
    let sum = f64x2.splat(0);
    let dot = f64x2.splat(0);
    let v = 0;
    for (; v + 4 <= vocab; v += 4) {
      const d = f32x4.sub(v128.load(p + ((<usize>v) << 2)), s);
      const e = expf4(d);
      const ed = f32x4.mul(e, d);
      sum = f64x2.add(sum, f64x2.promote_low_f32x4(e));
      sum = f64x2.add(sum, f64x2.promote_low_f32x4(v128.shuffle<f32>(e, e, 2, 3, 2, 3)));
      dot = f64x2.add(dot, f64x2.promote_low_f32x4(ed));
      dot = f64x2.add(dot, f64x2.promote_low_f32x4(v128.shuffle<f32>(ed, ed, 2, 3, 2, 3)));
    }
    let total = f64x2.extract_lane(sum, 0) + f64x2.extract_lane(sum, 1);
    let weighted = f64x2.extract_lane(dot, 0) + f64x2.extract_lane(dot, 1);
    for (; v < vocab; v++) {
      const d = load<f32>(p + ((<usize>v) << 2)) - top;
      const e = f32x4.extract_lane(expf4(f32x4.splat(d)), 0);
      total += <f64>e;
      weighted += <f64>e * <f64>d;
    }
    store<f32>(out + at + 4, <f32>(log64(total) - weighted / total));
  }
}

/** Whether the first logit equal to the row's maximum `top` is the one at `label`. */
function firstMaxAt(p: usize, label: i32, top: f32): bool {
  if (load<f32>(p + ((<usize>label) << 2)) != top) return false;
  for (let v = 0; v < label; v++) if (load<f32>(p + ((<usize>v) << 2)) == top) return false;
  return true;
}
