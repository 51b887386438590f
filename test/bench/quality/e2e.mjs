#!/usr/bin/env node
// @ts-check
// The quality benchmark, after the LoRA paper's Table 3 (GPT-2 on E2E NLG):
// LoRA vs full fine-tuning of the same base model (same data, steps, batch
// and sequence length), and the base model untouched. For each: trainable
// parameters, validation loss, test loss, and corpus BLEU of greedy
// generations against every reference of each test MR.
//
// Training and losses go through the real CLI (`lorafleet train|eval`, child
// processes); generation uses the models package in this process. It runs
// from the built packages (`pnpm run build` first). See README.md here.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { useBackend } from '../../../packages/core/dist/src/index.js';
import { loadTokenizer, readGpt2Config } from '../../../packages/models/dist/src/index.js';
import { corpusBleu, formatBleu } from './bleu.mjs';
import { examplesOf, readE2e, renderPrompt, writeJsonl } from './e2e-data.mjs';
import { parseOptions, usage } from './e2e-options.mjs';
import { generateHypotheses } from './hypotheses.mjs';

/** @typedef {import('./e2e-options.mjs').BenchOptions} BenchOptions */

/**
 * One row of the table.
 * @typedef {object} MethodResult
 * @property {string} method base, lora-r4, full
 * @property {string} label
 * @property {number} trainableParameters
 * @property {number | null} valLoss
 * @property {number} testLoss
 * @property {import('./bleu.mjs').BleuScore} bleu
 * @property {string} decoder
 * @property {number} newTokens generated, over all test MRs
 * @property {{ train: number, testLoss: number, generate: number }} seconds
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const CLI = join(ROOT, 'apps/coordinator/bin/lorafleet.js');

/**
 * Runs `lorafleet <args>` from the repo root; returns its stdout when
 * `capture`, else lets it print.
 * @param {string[]} args
 * @param {boolean} [capture]
 */
function lorafleet(args, capture = false) {
  const shown = `node ${relative(process.cwd(), CLI)} ${args.join(' ')}`;
  console.log(`$ ${shown}`);
  const result = spawnSync(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    stdio: capture ? ['ignore', 'pipe', 'inherit'] : 'inherit',
    encoding: 'utf8',
  });
  if (result.status !== 0)
    throw new Error(`lorafleet ${args[0]} failed (${result.status ?? result.signal}): ${shown}`);
  return result.stdout ?? '';
}

/**
 * Writes the JSONL files (train, valid, test) and says how many rows the
 * sequence length truncates; returns the test MRs' prompts and references.
 * @param {BenchOptions} o
 * @param {number} seqLen
 */
async function prepareData(o, seqLen) {
  const split = await readE2e(o.e2e, { seed: o.seed, validationFraction: o.valFraction });
  const testGroups = o.testLimit > 0 ? split.test.slice(0, o.testLimit) : split.test;
  const testRows = o.testLossRows > 0 ? o.testLossRows : Infinity;
  const sets = {
    train: { mrs: split.train.length, examples: examplesOf(split.train, o.promptFormat) },
    valid: { mrs: split.validation.length, examples: examplesOf(split.validation, o.promptFormat) },
    test: { mrs: null, examples: examplesOf(split.test, o.promptFormat, testRows) },
  };
  const dir = join(o.out, 'data');
  await mkdir(dir, { recursive: true });
  const tokenizer = await loadTokenizer(o.model);
  /** @param {{ prompt: string, completion: string }} e */
  const tokens = (e) =>
    tokenizer.encode(e.prompt).length + tokenizer.encode(e.completion).length + 1;
  /** @type {Record<string, { mrs: number | null, rows: number, truncated?: number }>} */
  const summary = {};
  for (const [name, { mrs, examples }] of Object.entries(sets)) {
    await writeJsonl(join(dir, `${name}.jsonl`), examples);
    const truncated = examples.filter((e) => tokens(e) > seqLen).length;
    summary[name] = { mrs, rows: examples.length, truncated };
    console.log(
      `data ${name}: ${mrs === null ? '' : `${mrs} MRs, `}${examples.length} rows, ` +
        `${truncated} longer than ${seqLen} tokens (truncated)`,
    );
  }
  const references = testGroups.map((g) => g.references);
  summary.bleu = { mrs: testGroups.length, rows: references.flat().length };
  console.log(`data bleu: ${testGroups.length} test MRs, ${references.flat().length} references`);
  // A yardstick: each MR's first human reference scored against its others.
  const several = testGroups.filter((g) => g.references.length > 1);
  const human = corpusBleu(
    several.map((g) => g.references[0] ?? ''),
    several.map((g) => g.references.slice(1)),
  );
  console.log(`human reference vs the others (${several.length} MRs): ${formatBleu(human)}`);
  const prompts = testGroups.map((g) => renderPrompt(g.prompt, o.promptFormat));
  console.log(`prompt: ${JSON.stringify(prompts[0])}`);
  return { dir, summary, prompts, references, humanBleu: human.score };
}

/** An argument as a POSIX shell reads it back. @param {string} arg */
const shellQuote = (arg) =>
  /^[\w./=:,+-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;

/** @param {number} n */
const count = (n) =>
  n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : `${n}`;

/** @param {number | null} x @param {number} digits */
const fixed = (x, digits) => (x === null || !Number.isFinite(x) ? 'n/a' : x.toFixed(digits));

/**
 * The table (markdown) and LoRA's ratios to full fine-tuning.
 * @param {MethodResult[]} rows
 */
function formatTable(rows) {
  const lines = [
    '| method | trainable params | val loss | test loss | BLEU | train s | generate s |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.label} | ${count(r.trainableParameters)} | ${fixed(r.valLoss, 4)} | ` +
        `${fixed(r.testLoss, 4)} | ${r.bleu.score.toFixed(2)} | ${r.seconds.train.toFixed(0)} | ` +
        `${r.seconds.generate.toFixed(0)} |`,
    ),
  ];
  const full = rows.find((r) => r.method === 'full');
  if (!full) return lines.join('\n');
  /** @param {number} a @param {number} b */
  const ratio = (a, b) => (Number.isFinite(a / b) ? `${(a / b).toFixed(3)}x` : 'n/a');
  lines.push('');
  for (const r of rows.filter((r) => r.method.startsWith('lora'))) {
    lines.push(
      `${r.label} / full fine-tuning: trainable params ` +
        `${fixed((100 * r.trainableParameters) / full.trainableParameters, 2)}%, ` +
        `BLEU ${ratio(r.bleu.score, full.bleu.score)}, test loss ${ratio(r.testLoss, full.testLoss)}`,
    );
  }
  return lines.join('\n');
}

async function main() {
  const o = parseOptions(process.argv.slice(2), ROOT);
  if (o === null) return console.log(usage());
  const script = relative(process.cwd(), fileURLToPath(import.meta.url));
  const command = ['node', script, ...process.argv.slice(2)].map(shellQuote).join(' ');
  console.log(`quality benchmark (E2E NLG): ${command}  (in ${process.cwd()})`);
  for (const pkg of ['packages/core', 'packages/models', 'packages/data', 'apps/coordinator'])
    if (!existsSync(join(ROOT, pkg, 'dist')))
      throw new Error(`${pkg}/dist is missing: run \`pnpm run build\` in ${ROOT} first`);
  if (!existsSync(join(o.model, 'config.json')))
    throw new Error(
      `no model at ${o.model}: pass --model DIR (for a trial, make one with ` +
        '`node apps/coordinator/bin/lorafleet.js init --config CONFIG.json --out DIR`)',
    );
  const started = performance.now();
  const seqLen = o.seqLen ?? Math.min(256, (await readGpt2Config(o.model)).nPositions);
  const data = await prepareData(o, seqLen);
  const shared = [
    '--batch-size',
    `${o.batchSize}`,
    '--seq-len',
    `${seqLen}`,
    '--backend',
    o.backend,
  ];
  await useBackend(o.backend);

  /** @type {MethodResult[]} */
  const rows = [];
  const { summary, humanBleu } = data;
  const results = {
    command,
    cwd: process.cwd(),
    options: { ...o, seqLen },
    data: summary,
    humanBleu,
  };
  const save = async () => {
    const seconds = (performance.now() - started) / 1000;
    const json = JSON.stringify({ ...results, rows, seconds }, null, 2);
    await writeFile(join(o.out, 'results.json'), json + '\n');
    return seconds;
  };

  /**
   * The mean token loss `lorafleet eval --json` reports.
   * @param {string} file in the data folder
   * @param {string} model
   * @param {string} [adapter]
   * @returns {number}
   */
  const evalLoss = (file, model, adapter) => {
    const args = ['eval', '--model', model, ...(adapter ? ['--adapter', adapter] : [])];
    const out = lorafleet([...args, '--data', join(data.dir, file), ...shared, '--json'], true);
    return JSON.parse(out.trim().split('\n').at(-1) ?? '{}').loss;
  };

  /**
   * Test loss and BLEU of a model (+ adapter); appends its row.
   * @param {Pick<MethodResult, 'method' | 'label' | 'trainableParameters' | 'valLoss'>} row
   * @param {number} trainSeconds
   * @param {string} model
   * @param {string} [adapter]
   */
  const evaluate = async (row, trainSeconds, model, adapter) => {
    let t = performance.now();
    const testLoss = evalLoss('test.jsonl', model, adapter);
    const testLossSeconds = (performance.now() - t) / 1000;
    t = performance.now();
    const { label } = row;
    const generation = {
      modelDir: model,
      adapterDir: adapter,
      maxNewTokens: o.maxNewTokens,
      label,
    };
    const gen = await generateHypotheses(data.prompts, generation);
    const generateSeconds = (performance.now() - t) / 1000;
    const bleu = corpusBleu(gen.hypotheses, data.references);
    console.log(`${label}: test loss ${testLoss.toFixed(4)}; ${formatBleu(bleu)} (${gen.decoder})`);
    gen.hypotheses
      .slice(0, 3)
      .forEach((h, i) =>
        console.log(`  ${JSON.stringify(data.prompts[i])} -> ${JSON.stringify(h)}`),
      );
    await mkdir(join(o.out, row.method), { recursive: true });
    const lines = gen.hypotheses.map((h, i) => ({ prompt: data.prompts[i] ?? '', completion: h }));
    await writeJsonl(join(o.out, row.method, 'hypotheses.jsonl'), lines);
    const seconds = { train: trainSeconds, testLoss: testLossSeconds, generate: generateSeconds };
    rows.push({ ...row, testLoss, bleu, decoder: gen.decoder, newTokens: gen.newTokens, seconds });
    await save();
  };

  // The base row's validation loss is every run's "eval loss before" (LoRA
  // starts with B = 0), so it is filled in after the first run.
  if (o.methods.includes('base')) {
    const row = { method: 'base', label: 'base model, no fine-tuning', trainableParameters: 0 };
    await evaluate({ ...row, valLoss: null }, 0, o.model);
  }
  const runs = (o.methods.includes('lora') ? o.loraRanks : []).map((r) => ({
    method: `lora-r${r}`,
    label: `LoRA r=${r} (${o.target})`,
    full: false,
    args: [
      ...['--lora-r', `${r}`, '--lora-alpha', `${o.loraAlpha}`],
      ...['--lora-dropout', `${o.loraDropout}`, '--target', o.target, '--lr', `${o.lrLora}`],
    ],
  }));
  if (o.methods.includes('full'))
    runs.push({
      method: 'full',
      label: 'full fine-tuning',
      full: true,
      args: ['--full-finetune', '--lr', `${o.lrFull}`],
    });
  /** @type {number | null} */
  let baseValLoss = null;
  for (const run of runs) {
    const dir = join(o.out, run.method);
    const t = performance.now();
    lorafleet([
      ...['train', '--model', o.model, '--data', join(data.dir, 'train.jsonl')],
      ...['--eval-data', join(data.dir, 'valid.jsonl'), '--out', dir, '--steps', `${o.steps}`],
      ...['--warmup-steps', `${o.warmupSteps}`, '--schedule', 'linear'],
      ...['--weight-decay', `${o.weightDecay}`, '--seed', `${o.seed}`],
      ...shared,
      ...run.args,
    ]);
    const trainSeconds = (performance.now() - t) / 1000;
    const summary = JSON.parse(await readFile(join(dir, 'summary.json'), 'utf8'));
    if (baseValLoss !== null && Math.abs(baseValLoss - summary.evalLossBefore) > 1e-4)
      console.warn(
        `warning: ${run.method} measured the base model's validation loss as ` +
          `${summary.evalLossBefore}, an earlier run as ${baseValLoss}`,
      );
    baseValLoss ??= summary.evalLossBefore;
    const row = { method: run.method, label: run.label, valLoss: summary.evalLossAfter };
    const trained = { ...row, trainableParameters: summary.trainableParameters };
    if (run.full) await evaluate(trained, trainSeconds, join(dir, 'model'));
    else await evaluate(trained, trainSeconds, o.model, join(dir, 'adapter'));
  }
  const base = rows.find((r) => r.method === 'base');
  if (base) base.valLoss = baseValLoss ?? evalLoss('valid.jsonl', o.model);

  const seconds = await save();
  const report = [
    `command: ${command}`,
    `model: ${o.model}; ${o.steps} steps x ${o.batchSize} rows x ${seqLen} tokens; ` +
      `BLEU on ${data.summary.bleu?.mrs} test MRs, test loss on ${data.summary.test?.rows} test rows`,
    '',
    formatTable(rows),
    '',
    `a human reference vs the other references of its MR: BLEU ${data.humanBleu.toFixed(2)}`,
    `total ${(seconds / 60).toFixed(1)} min; results: ${join(o.out, 'results.json')}`,
  ].join('\n');
  await writeFile(join(o.out, 'results.md'), report + '\n');
  console.log(`\n${report}`);
}

main().catch((err) => {
  console.error(`e2e benchmark: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
