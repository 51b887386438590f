// Split-k for the rank-sized products of the LoRA step's backward:
// dA = dh^T xd ([r, N] x [N, in]) and dB = s dy^T h ([out, N] x [N, r]) have
// a small output (r x in, out x r) and a long k (the tokens), so one
// workgroup per output tile leaves most of a GPU idle while each loops over
// every token. Both operands store k outermost (op(A) = A^T, B as stored),
// so k splits into S chunks as a free reshape: S products
// [M, k/S] x [k/S, N] in one batched dispatch ([S, M, N] partials), then one
// pass sums the partials in chunk order. The sum's rounding differs from the
// unsplit product's (a different order of float32 additions), as any split-k.
import type { tf } from '../tf.js';
import type { MatMulTile } from './tiles.js';

/** Split until the product has this many workgroups... */
const TARGET_WORKGROUPS = 128;
/** ...while every chunk keeps at least this much k, and k divides evenly. */
const MIN_CHUNK = 256;
const MAX_SPLITS = 64;
const MAX_GROUPS = 65535;

let enabled = true;

/** Turns split-k off (tests and the benchmark compare with the unsplit product), or on again. */
export function useSplitK(on: boolean): void {
  enabled = on;
}

/** How many k chunks a product gets: 1 (no split) unless it is a rank-sized A^T B. */
export function splitCount(
  p: { m: number; n: number; k: number; batch: number; transposeA: boolean; transposeB: boolean },
  tile: MatMulTile,
): number {
  if (!enabled || p.batch !== 1 || !p.transposeA || p.transposeB) return 1;
  const workgroups = Math.ceil(p.m / tile.tm) * Math.ceil(p.n / tile.tn);
  let splits = 1;
  while (
    workgroups * splits < TARGET_WORKGROUPS &&
    splits < MAX_SPLITS &&
    p.k % (2 * splits) === 0 &&
    p.k / (2 * splits) >= MIN_CHUNK
  ) {
    splits *= 2;
  }
  return splits;
}

/** Chunk views: A [k, M] -> [S, k/S, M] and B [k, N] -> [S, k/S, N] (the same data). */
export function chunkViews(a: tf.TensorInfo, b: tf.TensorInfo, splits: number) {
  const [k, m] = a.shape.slice(-2) as [number, number];
  const n = b.shape[b.shape.length - 1]!;
  return {
    a: { ...a, shape: [splits, k / splits, m] },
    b: { ...b, shape: [splits, k / splits, n] },
  };
}

/** out [M, N] = the sum over s of partials [S, M, N], in order s = 0, 1, ... */
export function sumPartialsProgram(splits: number, m: number, n: number) {
  const groups = Math.ceil((m * n) / 64);
  return {
    variableNames: ['partials'],
    outputShape: [m, n],
    shaderKey: 'lorafleet_split_k_sum',
    dispatchLayout: { x: [0], y: [1] },
    dispatch: [Math.min(groups, MAX_GROUPS), Math.ceil(groups / MAX_GROUPS), 1],
    workgroupSize: [64, 1, 1],
    uniforms: 'count : i32, splits : i32,',
    getUserCode: () => `
    fn main() {
      let i = (i32(workgroupId.x) + i32(workgroupId.y) * ${MAX_GROUPS}) * 64 + i32(localIndex);
      if (i >= uniforms.count) { return; }
      var acc = 0.0;
      for (var s = 0; s < uniforms.splits; s++) {
        acc += partials[s * uniforms.count + i];
      }
      result[i] = acc;
    }`,
  };
}
