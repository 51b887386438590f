// float64 accumulation of f32x4 data, shared by the norms' kernels (layer-norm.ts,
// rms-norm.ts): each f32x4 is promoted to two f64x2 halves, summed in two
// f64x2 accumulators, and the four lanes added at the end.

/** Lanes 0-1 of an f32x4 as f64x2. */
export function lo64(v: v128): v128 {
  return f64x2.promote_low_f32x4(v);
}

/** Lanes 2-3 of an f32x4 as f64x2. */
export function hi64(v: v128): v128 {
  return f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 2, 3));
}

/** The sum of the four float64 lanes of a and b. */
export function total(a: v128, b: v128): f64 {
  return (
    f64x2.extract_lane(a, 0) +
    f64x2.extract_lane(b, 0) +
    (f64x2.extract_lane(a, 1) + f64x2.extract_lane(b, 1))
  );
}
