// The rotary embedding (rotate-half convention) over the last axis in f32x4,
// the wasm backend's LoraFleetRotary (the cpu backend runs the TypeScript
// reference, src/backend/rotary.ts). Pointers are addresses in
// tfjs-backend-wasm's heap. With x = (x1, x2) the halves of a row of D and
// (c1, c2), (s1, s2) the halves of its cos and sin rows:
//   forward:  y1 = x1 c1 - x2 s1,  y2 = x2 c2 + x1 s2   (x cos + rotate_half(x) sin)
//   inverse:  y1 = x1 c1 + x2 s2,  y2 = x2 c2 - x1 s1   (its transpose: the gradient)
// each a product, a product and one add in f32, as the tfjs ops compute them.
// x is [B, H, T, D]; cos and sin [Bc, 1, T, D] with Bc 1 or B.

export function rotary(
  x: usize,
  cos: usize,
  sin: usize,
  B: i32,
  H: i32,
  T: i32,
  D: i32,
  tableBatch: i32,
  inverse: i32,
  y: usize,
): void {
  const half = D >> 1;
  const rowBytes = (<usize>D) << 2;
  const halfBytes = (<usize>half) << 2;
  for (let b = 0; b < B; b++) {
    const tables = <usize>(tableBatch == 1 ? 0 : b) * <usize>T * rowBytes;
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const o = ((<usize>b * <usize>H + <usize>h) * <usize>T + <usize>t) * rowBytes;
        const at = tables + <usize>t * rowBytes;
        rotateRow(x + o, cos + at, sin + at, half, halfBytes, inverse != 0, y + o);
      }
    }
  }
}

function rotateRow(
  x: usize,
  cos: usize,
  sin: usize,
  half: i32,
  halfBytes: usize,
  inverse: bool,
  y: usize,
): void {
  let j = 0;
  for (; j + 4 <= half; j += 4) {
    const a = (<usize>j) << 2;
    const b = a + halfBytes;
    const x1 = v128.load(x + a);
    const x2 = v128.load(x + b);
    const c1 = v128.load(cos + a);
    const c2 = v128.load(cos + b);
    const s1 = v128.load(sin + a);
    const s2 = v128.load(sin + b);
    if (inverse) {
      v128.store(y + a, f32x4.add(f32x4.mul(x1, c1), f32x4.mul(x2, s2)));
      v128.store(y + b, f32x4.sub(f32x4.mul(x2, c2), f32x4.mul(x1, s1)));
    } else {
      v128.store(y + a, f32x4.sub(f32x4.mul(x1, c1), f32x4.mul(x2, s1)));
      v128.store(y + b, f32x4.add(f32x4.mul(x2, c2), f32x4.mul(x1, s2)));
    }
  }
  for (; j < half; j++) {
    const a = (<usize>j) << 2;
    const b = a + halfBytes;
    const x1 = load<f32>(x + a);
    const x2 = load<f32>(x + b);
    if (inverse) {
      store<f32>(y + a, x1 * load<f32>(cos + a) + x2 * load<f32>(sin + b));
      store<f32>(y + b, x2 * load<f32>(cos + b) - x1 * load<f32>(sin + a));
    } else {
      store<f32>(y + a, x1 * load<f32>(cos + a) - x2 * load<f32>(sin + a));
      store<f32>(y + b, x2 * load<f32>(cos + b) + x1 * load<f32>(sin + b));
    }
  }
}
