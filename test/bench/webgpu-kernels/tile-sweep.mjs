#!/usr/bin/env node
// Measures every candidate tile of the project's WGSL matmul on the shapes of
// the LoRA step, per class of shape of the tile table (rank-sized N, rank-sized
// M, large outputs, the rest), and writes the table: the fastest tile of each
// class (summed time over the class's shapes). Run on the GPU machine (test/gpu/run.sh
// does), then commit the printed table into
// packages/core/src/backend/webgpu-kernels/tiles.ts, or point
// LORAFLEET_WEBGPU_TILES at the JSON to use it without a build.
//   pnpm build && node test/bench/webgpu-kernels/tile-sweep.mjs --out tiles.json [--scale S]
import { rmSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  DEFAULT_TILE_TABLE,
  TILE_CANDIDATES,
  forceMatMulTile,
  rankForm,
  ruleHolds,
  tileName,
  tileProblem,
  useSplitK,
} from '../../../packages/core/dist/src/index.js';
import { closeWebGpu, flops, matmulShapes, openWebGpu, operands, tf, timeGpu } from './common.mjs';

const HELP = `usage: node test/bench/webgpu-kernels/tile-sweep.mjs --out FILE [options]
  --out FILE    the tile table as JSON (LORAFLEET_WEBGPU_TILES format)
  --scale S     divide every size by S (default: 1 on a GPU, 8 on SwiftShader)
  --repeats N   timed repeats per tile and shape, median taken (default 3)
  --help        this text`;

const { values: opt } = parseArgs({
  options: {
    out: { type: 'string' },
    scale: { type: 'string' },
    repeats: { type: 'string', default: '3' },
    help: { type: 'boolean', default: false },
  },
});
if (opt.help) {
  console.log(HELP);
  process.exit(0);
}
if (!opt.out) throw new Error('--out FILE is required (where the tile table goes); see --help');
const repeats = Number(opt.repeats);

const adapter = await openWebGpu();
const software = /swiftshader/i.test(adapter);
const scale = Number(opt.scale ?? (software ? 8 : 1));
const limits = tf.backend().device?.limits ?? {};
// The adapter's limits as the kernel reads them (tiles.ts: double-buffered tiles take twice the memory).
const fits = (t) =>
  tileProblem(t, {
    maxInvocations: limits.maxComputeInvocationsPerWorkgroup ?? 256,
    maxWorkgroupStorage: limits.maxComputeWorkgroupStorageSize ?? 16384,
  }) === null;

// The default table's rules, in order, each with the step's shapes it governs.
const shapes = matmulShapes(scale);
// The first rule whose bounds hold (as tiles.ts's chooseTile reads them).
const holds = (rule, [, batch, m, k, n]) => ruleHolds(rule, m, n, k, batch);
const classOf = (shape) => DEFAULT_TILE_TABLE.rules.findIndex((rule) => holds(rule, shape));
const small = [
  [
    'small c_attn (1 sequence of 64)',
    1,
    64,
    Math.round(768 / scale),
    Math.round(2304 / scale),
    false,
    false,
  ],
];
const byClass = DEFAULT_TILE_TABLE.rules.map((rule, i) => ({
  rule,
  shapes: [...shapes, ...small].filter((s) => classOf(s) === i),
}));

/**
 * Seconds of the class's products with `tile`: unsplit (the tile on the
 * whole product), or with split-k up to `target` workgroups (split-k.ts).
 */
async function timeClass(tile, group, target = null) {
  useSplitK(target !== null);
  forceMatMulTile(tile, target ?? undefined);
  let seconds = 0;
  for (const shape of group) {
    const { a, b } = operands(shape);
    seconds += await timeGpu(() => tf.matMul(a, b, shape[5], shape[6]), { repeats });
    tf.dispose([a, b]);
  }
  forceMatMulTile(null);
  useSplitK(true);
  return seconds;
}

/**
 * Split-k for the class's winning tile: 2 and 4 chunks for GPT-2 small's
 * 768-column products (768 workgroups of 64x64); kept where it beats the
 * unsplit time by 3% or more.
 */
async function splitTargetFor(tile, group, unsplit) {
  // Batched products (attention's per-head ones) never split.
  if (unsplit === undefined || group.every((shape) => shape[1] > 1)) return {};
  let best = { seconds: unsplit / 1.03 };
  for (const splitTarget of [1536, 3072]) {
    const seconds = await timeClass(tile, group, splitTarget);
    console.log(
      `class ${rules.length}: ${tileName(tile)} split-k to ${splitTarget} workgroups ${(seconds * 1e3).toFixed(3)} ms (unsplit ${(unsplit * 1e3).toFixed(3)} ms)`,
    );
    if (seconds < best.seconds) best = { seconds, splitTarget };
  }
  return best.splitTarget ? { splitTarget: best.splitTarget } : {};
}

const rules = [];
const source = `${adapter}, ${new Date().toISOString().slice(0, 10)}, tile-sweep.mjs (sizes / ${scale})`;
/** The table so far: measured classes, then the default's rules (written after each class, so a cut-off sweep keeps what it measured). */
const write = () => {
  const done = rules.length === byClass.length;
  const table = {
    source: done ? source : `${source}, classes 0-${rules.length - 1} measured, the rest default`,
    rules: [...rules, ...byClass.slice(rules.length).map((c) => c.rule)],
  };
  writeFileSync(opt.out, JSON.stringify(table, null, 2) + '\n');
  return table;
};
/** Whether a rank-sized kernel (rank-product.ts), not a tile, computes this shape. */
const rankSized = ([, batch, m, k, n, transposeA, transposeB]) =>
  rankForm({ m, n, k, batch }, { transposeA, transposeB }) !== null;
for (const { rule, shapes: group } of byClass) {
  if (group.length === 0 || group.every(rankSized)) {
    console.log(
      `class ${rules.length}: ${group.length === 0 ? 'no shape of the step falls in it at this scale' : 'the rank-sized kernels compute all its shapes'}; default tile kept`,
    );
    rules.push(rule);
    continue;
  }
  let best = null;
  for (const tile of TILE_CANDIDATES.filter(fits)) {
    const seconds = await timeClass(tile, group);
    const work = group.reduce((sum, s) => sum + flops(s), 0);
    console.log(
      `class ${rules.length} (${group.map((s) => s[0]).join(', ')}): ${tileName(tile)} ${(seconds * 1e3).toFixed(3)} ms, ${(work / seconds / 1e9).toFixed(1)} GFLOP/s`,
    );
    if (!best || seconds < best.seconds) best = { tile, seconds };
  }
  const tile = best ? best.tile : rule.tile;
  rules.push({ ...rule, tile, ...(await splitTargetFor(tile, group, best?.seconds)) });
  write();
}
const errors = await closeWebGpu();
if (errors.length > 0) {
  rmSync(opt.out, { force: true });
  throw new Error(`WebGPU errors during the sweep: ${errors.join('; ')}`);
}

const table = write();
console.log(
  `tile table written to ${opt.out}${software ? ' (SwiftShader: not a GPU measurement, do not commit it)' : ''}:`,
);
console.log(JSON.stringify(table, null, 2));
