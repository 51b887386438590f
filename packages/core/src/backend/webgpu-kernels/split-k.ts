// Split-k: a product with few output tiles and a long k leaves most of a GPU
// idle while each workgroup loops over all of k. Split, workgroup z of the
// matmul program takes the k range [z * kChunk, (z + 1) * kChunk) of the one
// product (no copy, any transposes: the loaders bound k by the chunk) and
// writes its partial sum to [S, M, N]; one pass then sums the partials in
// chunk order. The sum's rounding differs from the unsplit product's (a
// different order of float32 additions), as any split-k.
//
// When: the rank-sized products of the LoRA backward, dA = dh^T xd ([r, N] x
// [N, in]) and dB = s dy^T h ([out, N] x [N, r]) (op(A) = A^T, B as stored:
// measured on an H200, 2026-12-04), split until they have TARGET_WORKGROUPS;
// any other unbatched product without the LoRA term (a bias is added with
// the partials) only where the tile table's rule gives a `splitTarget`
// (measured by the sweep, none by default).
import type { MatMulTile } from './tiles.js';

/** Split the rank-sized A^T B until the product has this many workgroups... */
const TARGET_WORKGROUPS = 128;
/** ...while every chunk keeps at least this much k. */
const MIN_CHUNK = 256;
const MAX_SPLITS = 64;
const MAX_GROUPS = 65535;

let enabled = true;

/** Turns split-k off (tests and the benchmark compare with the unsplit product), or on again. */
export function useSplitK(on: boolean): void {
  enabled = on;
}

let forcedSplits: number | null = null;

/** Forces S chunks on every unbatched plain product (tests); null: back to the rules. */
export function forceSplitK(splits: number | null): void {
  forcedSplits = splits;
}

/**
 * How many k chunks an unbatched plain product gets (1: no split): the
 * rank-sized A^T B up to TARGET_WORKGROUPS, others up to `splitTarget` (the
 * tile rule's), doubling while each chunk keeps MIN_CHUNK of k.
 */
export function splitCount(
  p: { m: number; n: number; k: number; batch: number; transposeA: boolean; transposeB: boolean },
  tile: MatMulTile,
  splitTarget = 0,
): number {
  if (!enabled || p.batch !== 1) return 1;
  if (forcedSplits !== null) return Math.max(1, Math.min(forcedSplits, Math.ceil(p.k / tile.tk)));
  const rankSized = p.transposeA && !p.transposeB;
  const target = Math.max(rankSized ? TARGET_WORKGROUPS : 0, splitTarget);
  const workgroups = Math.ceil(p.m / tile.tm) * Math.ceil(p.n / tile.tn);
  let splits = 1;
  while (workgroups * splits < target && splits < MAX_SPLITS && p.k / (2 * splits) >= MIN_CHUNK) {
    splits *= 2;
  }
  return splits;
}

/** k per chunk (a multiple of the tile's k slice, so every chunk starts on a vec4) and the chunks it takes. */
export function kChunks(
  k: number,
  splits: number,
  tile: MatMulTile,
): { kChunk: number; chunks: number } {
  const kChunk = Math.ceil(Math.ceil(k / splits) / tile.tk) * tile.tk;
  return { kChunk, chunks: Math.ceil(k / kChunk) };
}

/** out [M, N] = the sum over s of partials [S, M, N], in order s = 0, 1, ... (+ bias [N]). */
export function sumPartialsProgram(splits: number, m: number, n: number, bias = false) {
  const groups = Math.ceil((m * n) / 64);
  return {
    variableNames: ['partials', ...(bias ? ['bias'] : [])],
    outputShape: [m, n],
    shaderKey: `lorafleet_split_k_sum${bias ? '_bias' : ''}`,
    dispatchLayout: { x: [0], y: [1] },
    dispatch: [Math.min(groups, MAX_GROUPS), Math.ceil(groups / MAX_GROUPS), 1],
    workgroupSize: [64, 1, 1],
    uniforms: 'count : i32, splits : i32, cols : i32,',
    getUserCode: () => `
    fn main() {
      let i = (i32(workgroupId.x) + i32(workgroupId.y) * ${MAX_GROUPS}) * 64 + i32(localIndex);
      if (i >= uniforms.count) { return; }
      var acc = 0.0;
      for (var s = 0; s < uniforms.splits; s++) {
        acc += partials[s * uniforms.count + i];
      }
      result[i] = acc${bias ? ' + bias[i % uniforms.cols]' : ''};
    }`,
  };
}
