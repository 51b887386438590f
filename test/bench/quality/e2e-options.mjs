// @ts-check
// The quality benchmark's command line: every option with its default and
// why, parsed into one typed object.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { PROMPT_FORMATS } from './e2e-data.mjs';

/**
 * @typedef {object} BenchOptions
 * @property {string} model
 * @property {string} e2e
 * @property {string} out
 * @property {('base' | 'lora' | 'full')[]} methods
 * @property {number} steps
 * @property {number} batchSize
 * @property {number | null} seqLen null: min(256, the model's context)
 * @property {number} lrLora
 * @property {number} lrFull
 * @property {number[]} loraRanks
 * @property {number} loraAlpha
 * @property {number} loraDropout
 * @property {string} target
 * @property {number} warmupSteps
 * @property {number} weightDecay
 * @property {number} valFraction
 * @property {number} testLimit 0: every test MR
 * @property {number} testLossRows 0: every test row
 * @property {number} maxNewTokens
 * @property {import('./e2e-data.mjs').PromptFormat} promptFormat
 * @property {number} seed
 * @property {'wasm' | 'cpu'} backend
 */

// Defaults are sized for the default model (4 layers x 256, byte tokenizer,
// context 256) to finish in about 30 minutes on a 2-core machine (README.md).
// Training follows the paper's E2E recipe where the budget allows: LoRA r=4,
// alpha 32, dropout 0.1, AdamW with weight decay 0.01, linear decay; it is
// ~0.2 epoch instead of 5, so the learning rates are higher than its 2e-4.
/** @type {Record<string, { default: string, help: string }>} */
export const OPTIONS = {
  model: { default: 'packages/models/pretrained/default', help: 'base model folder' },
  e2e: { default: '../shared/data/e2e', help: 'folder with devset.csv and testset_w_refs.csv' },
  out: { default: 'runs/bench-quality', help: 'output folder (data, runs, results)' },
  methods: { default: 'base,lora,full', help: 'rows to run, comma-separated' },
  steps: { default: '100', help: 'optimizer steps of each fine-tuning run' },
  'batch-size': { default: '8', help: 'rows per step and per evaluation batch' },
  'seq-len': { default: '', help: 'tokens per row [min(256, model context)]' },
  'lr-lora': { default: '1e-3', help: 'peak learning rate, LoRA' },
  'lr-full': { default: '5e-4', help: 'peak learning rate, full fine-tuning' },
  'lora-ranks': { default: '4', help: 'LoRA ranks, one run each (e.g. 4,8)' },
  'lora-alpha': { default: '32', help: 'LoRA alpha' },
  'lora-dropout': { default: '0.1', help: 'dropout on the LoRA path' },
  target: { default: 'c_attn', help: 'modules LoRA adapts (comma-separated)' },
  'warmup-steps': { default: '10', help: 'linear warmup steps, then linear decay' },
  'weight-decay': { default: '0.01', help: 'AdamW weight decay' },
  'val-fraction': { default: '0.05', help: 'share of devset MRs held out for validation' },
  'test-limit': { default: '0', help: 'BLEU on the first N test MRs (0: all 630)' },
  'test-loss-rows': { default: '400', help: 'test loss on the first N test rows (0: all 4693)' },
  'max-new-tokens': { default: '200', help: 'generation cap; EOS, newline or context end first' },
  'prompt-format': { default: 'compact', help: `${PROMPT_FORMATS.join(' | ')} (e2e-data.mjs)` },
  seed: { default: '0', help: 'seed of the split, initialisation, order and dropout' },
  backend: { default: 'wasm', help: 'compute backend: wasm | cpu' },
};

export function usage() {
  const lines = Object.entries(OPTIONS).map(
    ([name, o]) => `  --${name.padEnd(16)} ${o.help}${o.default ? ` [${o.default}]` : ''}`,
  );
  return `usage: node test/bench/quality/e2e.mjs [options]\n${lines.join('\n')}`;
}

/**
 * @param {string[]} argv
 * @param {string} root defaults' paths are relative to it; given paths to the working directory
 * @returns {BenchOptions | null} null for --help
 */
export function parseOptions(argv, root) {
  /** @type {import('node:util').ParseArgsConfig['options']} */
  const spec = { help: { type: 'boolean' } };
  for (const name of Object.keys(OPTIONS)) spec[name] = { type: 'string' };
  const values = parseArgs({ args: argv, options: spec }).values;
  if (values.help) return null;
  /** @param {string} name */
  const given = (name) => typeof values[name] === 'string';
  /** @param {string} name */
  const str = (name) => (given(name) ? String(values[name]) : (OPTIONS[name]?.default ?? ''));
  /** @param {string} name @param {number} min */
  const num = (name, min) => {
    const v = Number(str(name));
    if (!(v >= min)) throw new Error(`--${name} must be a number >= ${min}, got "${str(name)}"`);
    return v;
  };
  /** @param {string} name @param {number} min */
  const int = (name, min) => {
    const v = num(name, min);
    if (!Number.isInteger(v)) throw new Error(`--${name} must be an integer, got "${str(name)}"`);
    return v;
  };
  /** @param {string} name */
  const path = (name) => resolve(given(name) ? process.cwd() : root, str(name));
  /** @param {string} name @param {readonly string[]} choices */
  const oneOf = (name, choices) => {
    if (!choices.includes(str(name)))
      throw new Error(`--${name} must be one of ${choices.join(', ')}, got "${str(name)}"`);
    return str(name);
  };
  const methods = str('methods').split(',').filter(Boolean);
  const unknown = methods.filter((m) => !['base', 'lora', 'full'].includes(m));
  if (unknown.length > 0 || methods.length === 0)
    throw new Error(`--methods: give some of base, lora, full; got "${str('methods')}"`);
  const loraRanks = str('lora-ranks').split(',').map(Number);
  if (!loraRanks.every((r) => Number.isInteger(r) && r >= 1))
    throw new Error(`--lora-ranks must be integers >= 1, got "${str('lora-ranks')}"`);
  return {
    model: path('model'),
    e2e: path('e2e'),
    out: path('out'),
    methods: /** @type {BenchOptions['methods']} */ (methods),
    steps: int('steps', 1),
    batchSize: int('batch-size', 1),
    seqLen: str('seq-len') === '' ? null : int('seq-len', 2),
    lrLora: num('lr-lora', 0),
    lrFull: num('lr-full', 0),
    loraRanks,
    loraAlpha: num('lora-alpha', 1e-6),
    loraDropout: num('lora-dropout', 0),
    target: str('target'),
    warmupSteps: int('warmup-steps', 0),
    weightDecay: num('weight-decay', 0),
    valFraction: num('val-fraction', 0.001),
    testLimit: int('test-limit', 0),
    testLossRows: int('test-loss-rows', 0),
    maxNewTokens: int('max-new-tokens', 1),
    promptFormat: /** @type {BenchOptions['promptFormat']} */ (
      oneOf('prompt-format', PROMPT_FORMATS)
    ),
    seed: int('seed', 0),
    backend: /** @type {BenchOptions['backend']} */ (oneOf('backend', ['wasm', 'cpu'])),
  };
}
