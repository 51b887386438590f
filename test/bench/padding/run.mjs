#!/usr/bin/env node
// --padding: each micro-batch padded to its longest row (longest, the
// default) against every row padded to --seq-len (max_length, the only way
// before), in the same invocation, through the real `lorafleet train` on
// prompt/completion data: E2E NLG's dev set (../shared/data/e2e: "mr" ->
// "ref", the quality benchmark's data, ~230 bytes an example) on a random
// model of the default model's shape (4 layers x 256, byte tokenizer) with a
// context of 1024, trained with --seq-len 1024, as a user sets
// max_seq_length to the model's context. Both runs train on the same rows
// and tokens; the ratio is
// max_length's seconds per step over longest's (the run's own clock, without
// evaluation), with the rows' mean real length over --seq-len beside it.
// Each configuration runs --repeats times in turn; medians are printed.
//   node test/bench/padding/run.mjs [--steps 4] [--batch-size 4] [--seq-len 1024] [--repeats 3]
// Needs the build (pnpm build).
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const { values: opt } = parseArgs({
  options: {
    steps: { type: 'string', default: '4' },
    'batch-size': { type: 'string', default: '4' },
    'seq-len': { type: 'string', default: '1024' },
    repeats: { type: 'string', default: '3' },
    backend: { type: 'string', default: 'wasm' },
    data: { type: 'string', default: join(ROOT, '..', 'shared', 'data', 'e2e', 'devset.csv') },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  console.log(
    'usage: node test/bench/padding/run.mjs [--steps 4] [--batch-size 4] [--seq-len 1024] [--repeats 3] [--backend wasm] [--data devset.csv]',
  );
  process.exit(0);
}

const CLI = join(ROOT, 'apps/coordinator/bin/lorafleet.js');
const DEFAULT_MODEL = join(ROOT, 'packages/models/pretrained/default');
const work = mkdtempSync(join(tmpdir(), 'lorafleet-bench-padding-'));

/** The default model's config and tokenizer with a context of --seq-len, random weights (`lorafleet init`). */
function longContextModel() {
  const json = JSON.parse(readFileSync(join(DEFAULT_MODEL, 'config.json'), 'utf8'));
  json.n_positions = Math.max(json.n_positions, Number(opt['seq-len']));
  const config = join(work, 'config.json');
  writeFileSync(config, JSON.stringify(json));
  const dir = join(work, 'model');
  execFileSync(process.execPath, [CLI, 'init', '--config', config, '--out', dir, '--seed', '1']);
  copyFileSync(join(DEFAULT_MODEL, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  return dir;
}
const MODEL = longContextModel();

/** One `lorafleet train`; its summary and the data line it printed. */
function train(padding, repeat) {
  const out = join(work, `${padding}-${repeat}`);
  const stdout = execFileSync(
    process.execPath,
    [
      ...[CLI, 'train', '--model', MODEL, '--data', opt.data, '--out', out, '--no-dashboard'],
      ...['--prompt-column', 'mr', '--completion-column', 'ref', '--prompt-template', '{mr}\n'],
      ...['--steps', opt.steps, '--batch-size', opt['batch-size'], '--seq-len', opt['seq-len']],
      ...['--backend', opt.backend, '--padding', padding, '--lora-dropout', '0'],
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  rmSync(out, { recursive: true, force: true });
  return { summary, data: stdout.split('\n').find((l) => l.startsWith('data: ')) ?? '' };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const runs = { longest: [], max_length: [] };
let dataLine = '';
for (let r = 0; r < Number(opt.repeats); r++) {
  for (const padding of ['max_length', 'longest']) {
    const { summary, data } = train(padding, r);
    dataLine = data;
    runs[padding].push(summary);
    console.error(
      `${padding} #${r + 1}: ${(summary.seconds / summary.steps).toFixed(3)} s/step, loss ${summary.trainLossLast10.toFixed(4)}`,
    );
  }
}
const perStep = (p) => median(runs[p].map((s) => s.seconds / s.steps));
const [longest, maxLength] = [perStep('longest'), perStep('max_length')];
// "N examples, M tokens -> R rows of T (padded)": the mean real length of a row.
const m = /([\d,]+) examples?, ([\d,]+) tokens -> ([\d,]+) rows of (\d+)/.exec(dataLine);
const n = (s) => Number(s.replaceAll(',', ''));
const fill = m ? n(m[2]) / n(m[1]) / n(m[4]) : NaN;
const loss = (p) => runs[p][0].trainLossLast10;
console.log(
  JSON.stringify({
    backend: opt.backend,
    batchSize: Number(opt['batch-size']),
    seqLen: Number(opt['seq-len']),
    steps: Number(opt.steps),
    meanRealTokensOverSeqLen: Number(fill.toFixed(3)),
    secondsPerStep: { longest, max_length: maxLength },
    speedup: Number((maxLength / longest).toFixed(2)),
    trainLossLast: { longest: loss('longest'), max_length: loss('max_length') },
  }),
);
rmSync(work, { recursive: true, force: true });
