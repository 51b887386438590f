// The output tiles of the project's WGSL matmul (matmul-program.ts) and the
// table that picks one per shape. A tile is: TM x TN outputs per workgroup,
// RM x RN per invocation (register blocking: (TM/RM) x (TN/RN) invocations),
// and TK, the depth of the k slice staged in workgroup memory per step.
//
// DEFAULT_TILE_TABLE was measured on an NVIDIA H200 (Dawn over Vulkan,
// driver 580) on 2026-12-04 by test/bench/webgpu-kernels/tile-sweep.mjs, which
// times every candidate tile on the LoRA step's shapes per class of the table
// and keeps the fastest. Another card: run the sweep there (test/gpu/run.sh
// does) and commit its output here with the card and date, or point env
// LORAFLEET_WEBGPU_TILES at its JSON file to try it without a build.
import { readFileSync } from 'node:fs';

export interface MatMulTile {
  /** Rows of C per workgroup (multiple of RM and of 4). */
  tm: number;
  /** Columns of C per workgroup (multiple of RN and of 4). */
  tn: number;
  /** Rows of C per invocation: 4 or 8. */
  rm: number;
  /** Columns of C per invocation: 4 or 8 (one vec4 accumulator per 4). */
  rn: number;
  /** k depth staged in workgroup memory per step (multiple of 4). */
  tk: number;
  /**
   * Double-buffered: the next k slice is read into registers while this one
   * is multiplied, then staged in a second workgroup buffer (twice the
   * workgroup memory, one barrier per slice instead of two).
   */
  db?: boolean;
  /**
   * Spread columns: an invocation's RN/4 vec4 columns lie TN/RN vec4s apart
   * (column (j * TN/RN + tx) * 4 for its j-th), not side by side, so
   * neighbouring invocations read neighbouring vec4s of the B tile (no
   * workgroup-memory bank conflicts when RN = 8) and store neighbouring
   * vec4s of C.
   */
  spread?: boolean;
}

/** One row of the table: the first whose bounds hold for (M, N, K, batch) wins. */
export interface TileRule {
  /** Upper bounds (inclusive); absent: unbounded. */
  maxM?: number;
  maxN?: number;
  minK?: number;
  /** Fewest output elements (batch * M * N) for this rule. */
  minOutputs?: number;
  /** Fewest batch entries (attention's per-head products have B * H). */
  minBatch?: number;
  tile: MatMulTile;
  /**
   * Split-k (split-k.ts) for the unbatched plain products of this rule: k is
   * split until the product has this many workgroups. Absent: only the
   * LoRA backward's rank-sized products split.
   */
  splitTarget?: number;
}

export interface TileTable {
  /** Where the table comes from: "default (not measured)" or "<card>, <date>, tile-sweep.mjs". */
  source: string;
  rules: TileRule[];
}

/** The tiles the sweep tries (and the program compiles). */
export const TILE_CANDIDATES: readonly MatMulTile[] = [
  { tm: 128, tn: 128, rm: 8, rn: 8, tk: 8 },
  { tm: 128, tn: 128, rm: 8, rn: 8, tk: 16 },
  { tm: 128, tn: 64, rm: 8, rn: 4, tk: 16 },
  { tm: 128, tn: 64, rm: 8, rn: 8, tk: 16 },
  { tm: 64, tn: 128, rm: 4, rn: 8, tk: 16 },
  { tm: 64, tn: 64, rm: 4, rn: 4, tk: 16 },
  { tm: 64, tn: 64, rm: 8, rn: 8, tk: 16 },
  { tm: 32, tn: 32, rm: 4, rn: 4, tk: 16 },
  { tm: 64, tn: 8, rm: 4, rn: 4, tk: 32 },
  { tm: 32, tn: 8, rm: 4, rn: 4, tk: 32 },
  { tm: 8, tn: 64, rm: 4, rn: 4, tk: 32 },
  // Double-buffered (2026-12-04 evening, not yet measured on a GPU: the sweep decides).
  { tm: 64, tn: 64, rm: 8, rn: 8, tk: 16, db: true },
  { tm: 64, tn: 64, rm: 4, rn: 4, tk: 16, db: true },
  { tm: 128, tn: 128, rm: 8, rn: 8, tk: 8, db: true },
  { tm: 128, tn: 64, rm: 8, rn: 4, tk: 8, db: true },
  // Spread columns (2026-12-05, not yet measured on a GPU: the sweep decides).
  { tm: 64, tn: 64, rm: 8, rn: 8, tk: 16, spread: true },
  { tm: 128, tn: 128, rm: 8, rn: 8, tk: 8, spread: true },
  { tm: 64, tn: 64, rm: 8, rn: 8, tk: 16, db: true, spread: true },
  { tm: 128, tn: 128, rm: 8, rn: 8, tk: 8, db: true, spread: true },
];

/**
 * Measured on an NVIDIA H200 (2026-12-04, tile-sweep.mjs at GPT-2 small's
 * shapes, 8 x 512 tokens, the 11 candidates above): 32x32 / 4x4 won the
 * rank-sized products (few outputs: the most workgroups), 128x64 / 8x4
 * attention's per-head products, 64x64 / 8x8 the large ones (35.8 ms over
 * the class against 36.7 for 128x128 and 41.7 for 32x32), 32x32 the rest.
 */
export const DEFAULT_TILE_TABLE: TileTable = {
  source: 'nvidia-h200, 2026-12-04, tile-sweep.mjs (sizes / 1)',
  rules: [
    { maxN: 16, tile: { tm: 32, tn: 32, rm: 4, rn: 4, tk: 16 } },
    { maxM: 16, tile: { tm: 32, tn: 32, rm: 4, rn: 4, tk: 16 } },
    { minBatch: 2, minOutputs: 512 * 512, tile: { tm: 128, tn: 64, rm: 8, rn: 4, tk: 16 } },
    { minOutputs: 512 * 512, tile: { tm: 64, tn: 64, rm: 8, rn: 8, tk: 16 } },
    { tile: { tm: 32, tn: 32, rm: 4, rn: 4, tk: 16 } },
  ],
};

/** Adapter limits a tile must fit (WebGPU's defaults when unknown). */
export interface TileLimits {
  maxInvocations: number;
  maxWorkgroupStorage: number;
}

export const DEFAULT_LIMITS: TileLimits = { maxInvocations: 256, maxWorkgroupStorage: 16384 };

/** Why a tile cannot run, or null. */
export function tileProblem(tile: MatMulTile, limits: TileLimits = DEFAULT_LIMITS): string | null {
  const { tm, tn, rm, rn, tk } = tile;
  if (![4, 8].includes(rm) || ![4, 8].includes(rn)) return `rm and rn must be 4 or 8`;
  if (tm % rm !== 0 || tn % rn !== 0) return `tm must be a multiple of rm and tn of rn`;
  if (tk % 4 !== 0 || tk <= 0) return `tk must be a positive multiple of 4`;
  const invocations = (tm / rm) * (tn / rn);
  if (invocations > limits.maxInvocations) {
    return `${invocations} invocations per workgroup > the adapter's ${limits.maxInvocations}`;
  }
  const bytes = 4 * tk * (tm + tn) * (tile.db ? 2 : 1);
  if (bytes > limits.maxWorkgroupStorage) {
    return `${bytes} bytes of workgroup memory > the adapter's ${limits.maxWorkgroupStorage}`;
  }
  return null;
}

export function tileName(t: MatMulTile): string {
  return `${t.tm}x${t.tn}_${t.rm}x${t.rn}_k${t.tk}${t.db ? '_db' : ''}${t.spread ? '_sp' : ''}`;
}

/** Whether a rule's bounds hold for C [batch, M, N] = A [.., M, K] B [.., K, N]. */
export function ruleHolds(rule: TileRule, m: number, n: number, k: number, batch: number): boolean {
  return (
    (rule.maxM === undefined || m <= rule.maxM) &&
    (rule.maxN === undefined || n <= rule.maxN) &&
    (rule.minK === undefined || k >= rule.minK) &&
    (rule.minOutputs === undefined || batch * m * n >= rule.minOutputs) &&
    (rule.minBatch === undefined || batch >= rule.minBatch)
  );
}

/** Reads and checks a table file (the sweep's JSON). */
export function readTileTable(path: string): TileTable {
  let table: TileTable;
  try {
    table = JSON.parse(readFileSync(path, 'utf8')) as TileTable;
  } catch (error) {
    throw new Error(`LORAFLEET_WEBGPU_TILES=${path}: ${(error as Error).message}`);
  }
  if (!Array.isArray(table.rules) || table.rules.length === 0) {
    throw new Error(`LORAFLEET_WEBGPU_TILES=${path}: no "rules" (write it with tile-sweep.mjs)`);
  }
  for (const rule of table.rules) {
    const problem = tileProblem(rule.tile);
    if (problem)
      throw new Error(`LORAFLEET_WEBGPU_TILES=${path}: ${tileName(rule.tile)}: ${problem}`);
    const target = rule.splitTarget;
    if (target !== undefined && !(Number.isInteger(target) && target > 0))
      throw new Error(
        `LORAFLEET_WEBGPU_TILES=${path}: splitTarget must be a positive integer, got ${target}`,
      );
  }
  return table;
}

let table: TileTable | undefined;
let forced: TileRule | null = null;

/** The table in use: env LORAFLEET_WEBGPU_TILES's file, else the default. */
export function tileTable(): TileTable {
  if (table) return table; // every matmul asks: no process.env read (a C++ call) each time
  const path = process.env.LORAFLEET_WEBGPU_TILES;
  table = path ? readTileTable(path) : DEFAULT_TILE_TABLE;
  return table;
}

/**
 * Forces one tile (and split-k target, TileRule.splitTarget) for every
 * matmul (the sweep and tests); null: back to the table.
 */
export function forceMatMulTile(tile: MatMulTile | null, splitTarget?: number): void {
  if (tile) {
    const problem = tileProblem(tile);
    if (problem) throw new Error(`tile ${tileName(tile)}: ${problem}`);
  }
  forced = tile ? { tile, ...(splitTarget ? { splitTarget } : {}) } : null;
}

/** The rule for C [batch, M, N] = A [.., M, K] B [.., K, N] whose tile fits the adapter's limits. */
export function chooseRule(
  m: number,
  n: number,
  k: number,
  batch: number,
  limits: TileLimits = DEFAULT_LIMITS,
): TileRule {
  if (forced) return forced;
  for (const rule of tileTable().rules) {
    if (ruleHolds(rule, m, n, k, batch) && tileProblem(rule.tile, limits) === null) return rule;
  }
  return { tile: { tm: 32, tn: 32, rm: 4, rn: 4, tk: 16 } }; // fits WebGPU's minimum limits
}

/** The tile of chooseRule. */
export function chooseTile(
  m: number,
  n: number,
  k: number,
  batch: number,
  limits: TileLimits = DEFAULT_LIMITS,
): MatMulTile {
  return chooseRule(m, n, k, batch, limits).tile;
}
