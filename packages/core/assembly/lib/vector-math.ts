// Vector exp and a float64 log for the step's SIMD kernels (softmax-xent.ts,
// gelu-new.ts). Not a kernel module of its own: build-kernels.mjs compiles
// only assembly/*.ts, and the kernels import this file. Constants are
// immediates (no data segment, no globals).

// exp(x) = 2^k exp(r), k = nearest(x / ln 2), r = x - k ln 2 in two parts
// (Cody-Waite: k C1 is exact for |k| <= 127, C1 having 9 significant bits),
// exp(r) on |r| <= ln(2) / 2 by Cephes' expf polynomial (degree 7; ~1 ulp
// in float32), 2^k built in the exponent bits.
const LOG2E: f32 = 1.4426950408889634;
const C1: f32 = 0.693359375;
const C2: f32 = -2.1219444e-4;
const P0: f32 = 1.98756915e-4;
const P1: f32 = 1.3981999507e-3;
const P2: f32 = 8.3334519073e-3;
const P3: f32 = 4.1665795894e-2;
const P4: f32 = 1.6666665459e-1;
const P5: f32 = 5.0000001201e-1;
// Below ln(2^-126) the result would be subnormal: it is 0 instead (the
// kernels add it to sums >= 1 or multiply it by a gradient, where it is
// below float32's resolution). Above 88 it would overflow: x is clamped.
const EXP_LO: f32 = -87.33654;
const EXP_HI: f32 = 88.0;
const ROUNDER: f32 = 12582912.0; // 1.5 * 2^23

/**
 * exp of each lane of x (f32x4): relative error ~1 ulp on [-87.3, 88]; 0
 * below, exp(88) above; NaN stays NaN. Clamps use pmin/pmax (one x64
 * instruction each, where min/max's NaN rules cost several), and k is
 * rounded by adding 1.5 * 2^23 (its float bits then hold k in the low
 * mantissa bits: shifted left by 23 they are 2^k's exponent field, minus
 * the bias), which saves a nearest and a saturating conversion.
 */
export function expf4(x: v128): v128 {
  const c = f32x4.pmin(f32x4.pmax(x, f32x4.splat(EXP_LO)), f32x4.splat(EXP_HI));
  const t = f32x4.add(f32x4.mul(c, f32x4.splat(LOG2E)), f32x4.splat(ROUNDER));
  const k = f32x4.sub(t, f32x4.splat(ROUNDER));
  let r = f32x4.sub(c, f32x4.mul(k, f32x4.splat(C1)));
  r = f32x4.sub(r, f32x4.mul(k, f32x4.splat(C2)));
  const z = f32x4.mul(r, r);
  let p = f32x4.add(f32x4.mul(f32x4.splat(P0), r), f32x4.splat(P1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(P2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(P3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(P4));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(P5));
  p = f32x4.add(f32x4.add(f32x4.mul(p, z), r), f32x4.splat(1));
  const pow2 = i32x4.add(i32x4.shl(t, 23), i32x4.splat(127 << 23));
  return v128.andnot(f32x4.mul(p, pow2), f32x4.lt(x, f32x4.splat(EXP_LO)));
}

const LN2: f64 = 0.6931471805599453;
const SQRT2: f64 = 1.4142135623730951;

/**
 * Natural log of x > 0 in float64 (error ~1e-15 relative): x = 2^e m with
 * m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m - 1) / (m + 1),
 * |s| < 0.172, by its series to s^17. AssemblyScript's own Math.log uses a
 * table (a data segment), which these modules must not have. Subnormal x is
 * not handled (the kernels take logs of sums >= 1).
 */
export function log64(x: f64): f64 {
  if (!(x > 0)) return x == 0 ? -Infinity : NaN;
  if (x == Infinity) return x;
  const bits = reinterpret<u64>(x);
  let e = <i32>((bits >> 52) & 0x7ff) - 1023;
  let m = reinterpret<f64>((bits & 0x000fffffffffffff) | 0x3ff0000000000000);
  if (m > SQRT2) {
    m *= 0.5;
    e += 1;
  }
  const s = (m - 1) / (m + 1);
  const s2 = s * s;
  const tail =
    s2 *
    (1.0 / 3 +
      s2 *
        (1.0 / 5 +
          s2 *
            (1.0 / 7 +
              s2 * (1.0 / 9 + s2 * (1.0 / 11 + s2 * (1.0 / 13 + s2 * (1.0 / 15 + s2 / 17)))))));
  return <f64>e * LN2 + 2 * s + 2 * s * tail;
}
