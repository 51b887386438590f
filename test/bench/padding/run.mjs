#!/usr/bin/env node
// Padding, in the same invocation, through the real `lorafleet train` on
// prompt/completion data: E2E NLG's dev set (../shared/data/e2e: "mr" ->
// "ref", the quality benchmark's data, ~230 bytes an example) on a random
// model of the default model's shape (4 layers x 256, byte tokenizer) with a
// context of 1024, trained with --seq-len 1024, as a user sets
// max_seq_length to the model's context. Two comparisons:
//   --compare padding (default): each micro-batch padded to its longest row
//     (--padding longest, the default) against every row padded to --seq-len
//     (max_length, the only way before); 4 steps.
//   --compare sampling: under --padding longest, batches of similar lengths
//     (--train-sampling-strategy group_by_length) against shuffled ones
//     (random, the default); 50 steps, one whole megabatch at batch 4
//     (transformers' rule: 50 batches), since group_by_length puts a
//     megabatch's longest batches first.
//   --compare packing: examples packed by best fit into rows of --seq-len,
//     each attending within itself (--packing-strategy bfd, TRL's packing
//     default) against one example per row cut to the batch's longest
//     (padding longest); 6 steps. A bfd row holds several examples, so the
//     ratio that counts is of real tokens trained per second (the real
//     tokens of the steps' rows over the median of the steps after the
//     first, which warms the heap up), not seconds per step.
//   --compare free: each micro-batch's rows end to end in one row without
//     padding (--padding-free, TRL's padding_free) against padding to the
//     longest; 6 steps, the same rows: the same loss up to rounding.
// Each pair trains on the same number of rows; the ratio is the baseline's
// seconds per step over the other's (the run's own clock, without
// evaluation). Beside it, the physical measure: the tokens each run's steps
// compute (rows x the length each micro-batch is cut to) over the real tokens
// in them, from the same rows, sampler and cuts the run uses.
// Each configuration runs --repeats times in turn; medians are printed.
//   node test/bench/padding/run.mjs [--compare padding|sampling|packing|free] [--steps N] [--batch-size 4] [--seq-len 1024] [--repeats 3]
// Needs the build (pnpm build).
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { GlobalBatchSampler } from '../../../packages/data/dist/src/index.js';
import { loadTokenizer } from '../../../packages/models/dist/src/index.js';
import { batchesOf, paddedLengths, prepareRows } from '../../../packages/worker/dist/src/index.js';

/** What each comparison runs: its configurations (the baseline first) and default steps. */
const COMPARISONS = {
  padding: {
    steps: '4',
    configs: { max_length: { padding: 'max_length' }, longest: { padding: 'longest' } },
  },
  sampling: {
    steps: '50',
    configs: { random: { strategy: 'random' }, group_by_length: { strategy: 'group_by_length' } },
  },
  packing: {
    steps: '6',
    configs: { longest: { padding: 'longest' }, bfd: { packing: 'bfd' } },
  },
  free: {
    steps: '6',
    configs: { longest: { padding: 'longest' }, free: { padding: 'free' } },
  },
};

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const { values: opt } = parseArgs({
  options: {
    compare: { type: 'string', default: 'padding' },
    steps: { type: 'string' },
    'batch-size': { type: 'string', default: '4' },
    'seq-len': { type: 'string', default: '1024' },
    repeats: { type: 'string', default: '3' },
    backend: { type: 'string', default: 'wasm' },
    data: { type: 'string', default: join(ROOT, '..', 'shared', 'data', 'e2e', 'devset.csv') },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
const comparison = COMPARISONS[opt.compare];
if (opt.help || !comparison) {
  console.log(
    'usage: node test/bench/padding/run.mjs [--compare padding|sampling|packing|free] [--steps 4 (padding), 50 (sampling), 6 (packing, free)] [--batch-size 4] [--seq-len 1024] [--repeats 3] [--backend wasm] [--data devset.csv]',
  );
  process.exit(opt.help ? 0 : 2);
}
const steps = Number(opt.steps ?? comparison.steps);
const [batchSize, seqLen] = [Number(opt['batch-size']), Number(opt['seq-len'])];

const CLI = join(ROOT, 'apps/coordinator/bin/lorafleet.js');
const DEFAULT_MODEL = join(ROOT, 'packages/models/pretrained/default');
const work = mkdtempSync(join(tmpdir(), 'lorafleet-bench-padding-'));
const CSV = { promptColumn: 'mr', completionColumn: 'ref', promptTemplate: '{mr}\n' };

/** The default model's config and tokenizer with a context of --seq-len, random weights (`lorafleet init`). */
function longContextModel() {
  const json = JSON.parse(readFileSync(join(DEFAULT_MODEL, 'config.json'), 'utf8'));
  json.n_positions = Math.max(json.n_positions, seqLen);
  const config = join(work, 'config.json');
  writeFileSync(config, JSON.stringify(json));
  const dir = join(work, 'model');
  execFileSync(process.execPath, [CLI, 'init', '--config', config, '--out', dir, '--seed', '1']);
  copyFileSync(join(DEFAULT_MODEL, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  return dir;
}
const MODEL = longContextModel();

/** One `lorafleet train` of a configuration; its summary. */
function train(name, { padding = 'longest', strategy = 'random', packing }, repeat) {
  const out = join(work, `${name}-${repeat}`);
  execFileSync(
    process.execPath,
    [
      ...[CLI, 'train', '--model', MODEL, '--data', opt.data, '--out', out, '--no-dashboard'],
      ...['--prompt-column', CSV.promptColumn, '--completion-column', CSV.completionColumn],
      ...['--prompt-template', CSV.promptTemplate, '--steps', String(steps)],
      ...['--batch-size', String(batchSize), '--seq-len', String(seqLen), '--lora-dropout', '0'],
      ...['--backend', opt.backend, '--train-sampling-strategy', strategy],
      ...(padding === 'free' ? ['--padding-free'] : ['--padding', padding]),
      ...(packing ? ['--packing-strategy', packing] : []),
    ],
    { encoding: 'utf8', stdio: ['ignore', 'ignore', 'ignore'] },
  );
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  // The steps after the first (which warms the heap up), each from metrics.jsonl's elapsed seconds.
  const elapsed = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line))
    .filter((m) => m.step !== undefined && m.seconds !== undefined)
    .map((m) => m.seconds);
  summary.steadySecondsPerStep = median(elapsed.slice(1).map((t, i) => t - elapsed[i]));
  rmSync(out, { recursive: true, force: true });
  return summary;
}

/** The tokens the run's `steps` steps compute (rows x each micro-batch's cut) and the real tokens in them. */
async function tokensOf({ padding = 'longest', strategy = 'random', packing }) {
  const options = {
    seqLen,
    packing: 'auto',
    csv: CSV,
    ...(padding === 'max_length' || padding === 'free' ? { padding } : {}),
    ...(packing ? { packingStrategy: packing } : {}),
  };
  const { rows } = await prepareRows(opt.data, await loadTokenizer(MODEL), options);
  const lengths = paddedLengths(rows, options);
  const sampler = new GlobalBatchSampler({
    ...{ datasetSize: rows.length, seed: 0, globalBatchSize: batchSize, strategy, lengths },
  });
  let [computed, real] = [0, 0];
  let state = sampler.stateAtStep(0);
  for (let s = 0; s < steps; s++) {
    const { ids, next } = sampler.plan(state);
    const [batch] = batchesOf(
      ids.map((id) => rows[id]),
      batchSize,
      options,
    );
    computed += batch.ids.length;
    for (const id of ids) real += lengths[id];
    state = next;
  }
  return { computed, real };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const names = Object.keys(comparison.configs);
const runs = Object.fromEntries(names.map((name) => [name, []]));
for (let r = 0; r < Number(opt.repeats); r++) {
  for (const name of names) {
    const summary = train(name, comparison.configs[name], r);
    runs[name].push(summary);
    console.error(
      `${name} #${r + 1}: ${(summary.seconds / summary.steps).toFixed(3)} s/step, loss ${summary.trainLossLast10.toFixed(4)}`,
    );
  }
}
const perStep = (name) => median(runs[name].map((s) => s.seconds / s.steps));
const baseline = perStep(names[0]);
const results = {};
const tokens = {};
for (const name of names) tokens[name] = await tokensOf(comparison.configs[name]);
// Real tokens trained per second in the steps after the first (median step): what packing
// changes (a step holds more examples).
const steady = (name) => median(runs[name].map((s) => s.steadySecondsPerStep));
const realPerSecond = (name) => tokens[name].real / steps / steady(name);
for (const name of names) {
  results[name] = {
    secondsPerStep: Number(perStep(name).toFixed(3)),
    speedup: Number((baseline / perStep(name)).toFixed(2)),
    computedOverRealTokens: Number((tokens[name].computed / tokens[name].real).toFixed(3)),
    steadySecondsPerStep: Number(steady(name).toFixed(3)),
    realTokensPerSecond: Math.round(realPerSecond(name)),
    realTokensPerSecondVsBaseline: Number(
      (realPerSecond(name) / realPerSecond(names[0])).toFixed(2),
    ),
    trainLossLast10: runs[name][0].trainLossLast10,
  };
}
console.log(
  JSON.stringify({ compare: opt.compare, backend: opt.backend, batchSize, seqLen, steps, results }),
);
rmSync(work, { recursive: true, force: true });
