// `lorafleet train` against transformers' Trainer with PEFT, as users run
// them today: a GPT-2 and a Llama that transformers makes, a LoRA adapter trained a
// little by lorafleet, then trained further by both from the same values
// (`--init-adapter`; PeftModel.from_pretrained(..., is_trainable=True)) with
// AdamW (or Adafactor, or SGD with Nesterov momentum), warmup and linear decay, weight decay and clipping, on 1 and 2
// workers. Each step's loss and the final adapter must agree
// (test/reference/peft_trainer.py; the reference stack of
// scripts/reference-python.sh). Needs the build.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Rng } from '@lorafleet/core';
import { referencePython } from '@lorafleet/core/testing';

const root = join(import.meta.dirname, '..');
const out = mkdtempSync(join(tmpdir(), 'lorafleet-trainer-'));
const CLI = join(root, 'apps/coordinator/bin/lorafleet.js');
const STEPS = 4;
/** Every row in every step (batch = the data): the order of rows cannot matter. */
const ROWS = 8;
const SEQ = 32;
/** Packed rows' length: two or three of promptCompletions' examples. */
const PACKED = 64;

function run(command: string, args: string[]): string {
  const r = spawnSync(command, args, { cwd: root, encoding: 'utf8', timeout: 240_000 });
  expect(r.status, `${command} ${args.join(' ')}\n${r.stdout}${r.stderr}`).toBe(0);
  return r.stdout;
}
/**
 * One example per row, or with `packing` (a --packing-strategy) packed into
 * rows of PACKED; `paddingFree`: a micro-batch's examples in one row.
 */
const rowArgs = (data: string, packing?: string, paddingFree = false) => [
  ...['--data', data, '--batch-size', String(ROWS), '--seq-len', String(packing ? PACKED : SEQ)],
  ...(packing ? ['--packing-strategy', packing] : ['--packing', 'pad']),
  ...(paddingFree ? ['--padding-free'] : []),
  ...['--lora-dropout', '0', '--no-dashboard'],
];

interface TrainerRun {
  losses: number[];
  /** SFTTrainer only: its token metrics per step, and its evaluation after training. */
  accuracies?: number[];
  entropies?: number[];
  numTokens?: number[];
  eval?: { loss: number; mean_token_accuracy: number; entropy: number };
  moved: number;
  compare: Record<string, { maxAbsDiff: number; elements: number; over1PercentOfMoved: number }>;
}

/** ROWS {"input_ids"} lines of SEQ byte tokens. */
function randomRows(seed: number): string {
  const rng = new Rng(seed);
  const ids = () => Array.from({ length: SEQ }, () => Math.floor(rng.uniform() * 256));
  return Array.from({ length: ROWS }, () => JSON.stringify({ input_ids: ids() })).join('\n') + '\n';
}

/** ROWS {"prompt", "completion"} lines of a few words each (under SEQ bytes together, with EOS). */
function promptCompletions(seed: number): string {
  const rng = new Rng(seed);
  const words = ['the', 'fleet', 'trains', 'low', 'rank', 'adapters', 'on', 'every', 'gpu'];
  const text = (n: number) =>
    Array.from({ length: n }, () => words[Math.floor(rng.uniform() * words.length)]).join(' ');
  const line = () => ({
    prompt: `Q: ${text(2)}\nA:`,
    completion: ` ${text(1 + Math.floor(rng.uniform() * 2))}`,
  });
  return Array.from({ length: ROWS }, () => JSON.stringify(line())).join('\n') + '\n';
}

interface StepLine {
  step?: number;
  loss?: number;
  meanTokenAccuracy?: number;
  entropy?: number;
  evalLoss?: number;
  evalMeanTokenAccuracy?: number;
  evalEntropy?: number;
  numTokens?: number;
}

/** Each step's line with a training loss, from a run's metrics.jsonl. */
function stepLines(metrics: string): StepLine[] {
  return readFileSync(metrics, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as StepLine)
    .filter((m) => m.step !== undefined && m.loss !== undefined);
}

/**
 * SFTTrainer's token metrics against a run's: each step's mean_token_accuracy
 * (one batch per step, so its mean over the batch is the share over all
 * tokens) equal (TRL logs a float32), its entropy within 1e-4 (measured
 * 1.7e-6), its num_tokens (the tokens under the attention mask so far)
 * equal, and trainer.evaluate() after training against the run's held-out
 * evaluation at its last step, likewise.
 */
function expectTokenMetrics(lines: StepLine[], trainer: TrainerRun, what: string) {
  expect(trainer.accuracies).toHaveLength(STEPS);
  expect(
    lines.map((m) => m.numTokens),
    `${what}: num_tokens`,
  ).toEqual(trainer.numTokens);
  lines.forEach((m, i) => {
    expect(
      Math.abs(m.meanTokenAccuracy! - trainer.accuracies![i]!),
      `${what} step ${i + 1}`,
    ).toBeLessThan(1e-6);
    expect(Math.abs(m.entropy! - trainer.entropies![i]!), `${what} step ${i + 1}`).toBeLessThan(
      1e-4,
    );
  });
  expect(trainer.accuracies!.some((a) => a > 0.05)).toBe(true); // not vacuous
  const last = lines.at(-1)!;
  const e = trainer.eval!;
  expect(Math.abs(last.evalLoss! - e.loss), what).toBeLessThan(1e-4);
  expect(Math.abs(last.evalMeanTokenAccuracy! - e.mean_token_accuracy), what).toBeLessThan(1e-6);
  expect(Math.abs(last.evalEntropy! - e.entropy), what).toBeLessThan(1e-4);
}

describe('lorafleet train against transformers Trainer + PEFT', () => {
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  // A GPT-2 (Conv1D layers, LayerNorm, tied head) and a Llama (GQA, llama3 rotary scaling,
  // RMSNorm, SwiGLU, untied head), each made by transformers, with Trainer on token rows;
  // and the GPT-2 with TRL's SFTTrainer on prompt-completion lines, read by both through
  // one tokenizer.json that the tokenizers library writes.
  // The Llama also takes other AdamW settings (--adam-beta1, --adam-beta2, --adam-epsilon) and
  // its warmup as a share of the steps (0.3 of 4: 2 steps, rounded up by both).
  const CASES = {
    gpt2: { make: ['make-tiny', '--dir'], folder: '', targets: 'c_attn,c_proj,c_fc', sft: false },
    llama: {
      make: ['make-families', '--dir'],
      folder: 'llama',
      targets: 'all-linear',
      sft: false,
      warmup: 0.3,
      adam: { beta1: 0.85, beta2: 0.95, eps: 1e-6 },
    },
    'gpt2 SFTTrainer': {
      make: ['make-tiny', '--dir'],
      folder: '',
      targets: 'c_attn,c_proj,c_fc',
      sft: true,
    },
    // TRL's packing=True (packing_strategy "bfd", padding-free): two or three examples per row
    // of 64, each at its own positions and attending within itself (transformers reads the
    // packed position_ids), against --packing-strategy bfd; the batch is every row.
    'gpt2 SFTTrainer packing bfd': {
      make: ['make-tiny', '--dir'],
      folder: '',
      targets: 'c_attn,c_proj,c_fc',
      sft: true,
      packing: 'bfd',
    },
    // TRL's padding_free=True without packing: each batch's examples end to end in one row,
    // each at its own positions with its first label dropped, against --padding-free.
    'gpt2 SFTTrainer padding_free': {
      make: ['make-tiny', '--dir'],
      folder: '',
      targets: 'c_attn,c_proj,c_fc',
      sft: true,
      paddingFree: true,
    },
    // Other optimizers by transformers' optim and optim_args: its own Adafactor (factored
    // second moments of each [r, in] and [out, r] matrix) and torch's SGD with Nesterov momentum.
    'gpt2 adafactor': {
      make: ['make-tiny', '--dir'],
      folder: '',
      targets: 'c_attn,c_proj,c_fc',
      sft: false,
      optim: { name: 'adafactor', title: 'Adafactor' },
    },
    'llama sgd nesterov': {
      make: ['make-families', '--dir'],
      folder: 'llama',
      targets: 'all-linear',
      sft: false,
      optim: { name: 'sgd', args: 'momentum=0.9,nesterov=True', title: 'SGD' },
      lr: 0.2, // SGD's steps are lr times the gradient: small ones at AdamW's lr
    },
  };

  it.each(Object.keys(CASES) as (keyof typeof CASES)[])(
    '%s: trains an adapter further (--init-adapter) to the adapter the trainer trains, step losses equal, 1 and 2 workers',
    (name) => {
      const { make, folder, targets, sft } = CASES[name];
      const {
        warmup = 1,
        adam,
        optim,
        lr = 0.01,
        packing,
        paddingFree = false,
      } = CASES[name] as {
        warmup?: number;
        lr?: number;
        adam?: Record<string, number>;
        optim?: { name: string; args?: string; title: string };
        packing?: 'bfd';
        paddingFree?: boolean;
      };
      const work = join(out, name.replace(' ', '-'));
      run(referencePython(), ['test/gpu/reference.py', ...make, join(work, 'made')]);
      const model = join(work, 'made', folder);
      if (sft) run(referencePython(), ['test/reference/peft_trainer.py', 'byte-tokenizer', model]);
      const data = join(work, 'rows.jsonl');
      writeFileSync(data, sft ? promptCompletions(5) : randomRows(3));
      const train = (dir: string, options: Record<string, string | number>) =>
        run(process.execPath, [
          ...[
            CLI,
            'train',
            '--model',
            model,
            '--out',
            join(work, dir),
            ...rowArgs(data, packing, paddingFree),
          ],
          ...Object.entries(options).flatMap(([k, v]) => [`--${k}`, String(v)]),
        ]);
      // A start away from B = 0: two steps of lorafleet's own.
      train('init', { steps: 2, 'lora-r': 4, target: targets, lr: 0.02 });
      const init = join(work, 'init', 'adapter');
      const settings = { steps: STEPS, lr, warmup, weightDecay: 0.01, maxGradNorm: 1.0 };
      const said = [1, 2].map((workers) =>
        train(`w${workers}`, {
          ...{ 'init-adapter': init, workers, steps: STEPS, lr: settings.lr },
          ...{ 'warmup-steps': settings.warmup, schedule: 'linear' },
          ...{ 'weight-decay': settings.weightDecay, 'max-grad-norm': settings.maxGradNorm },
          ...(adam
            ? { 'adam-beta1': adam.beta1!, 'adam-beta2': adam.beta2!, 'adam-epsilon': adam.eps! }
            : {}),
          ...(optim
            ? { optim: optim.name, ...(optim.args ? { 'optim-args': optim.args } : {}) }
            : {}),
          // SFTTrainer evaluates the trained adapter on the data: so does the run at its last step.
          ...(sft ? { 'eval-data': data, 'eval-every': STEPS } : {}),
        }),
      );
      expect(said[0]).toContain(`starting from the adapter ${init}`);
      if (packing) expect(said[0]).toMatch(/-> [3-4] rows of 64 \(packed, bfd\)/); // 8 examples, 2 or 3 a row
      if (paddingFree) expect(said[0]).toMatch(/\(padded; padding-free: each micro-batch's rows/);
      const schedule = `lr ${lr} (linear, ${Math.ceil(warmup * (warmup < 1 ? STEPS : 1))} warmup steps)`;
      expect(said[0]).toContain(
        optim
          ? `optimizer: ${optim.title} ${schedule}, `
          : `optimizer: AdamW ${schedule}, ` +
              `betas ${adam?.beta1 ?? 0.9}/${adam?.beta2 ?? 0.999}, eps ${adam?.eps ?? 1e-8}, weight decay 0.01`,
      );
      const spec = join(work, 'spec.json');
      const folders = [1, 2].map((w) => join(work, `w${w}`, 'adapter'));
      writeFileSync(
        spec,
        JSON.stringify({
          ...{ model, adapter: init, data, ...settings, compare: folders },
          ...(adam ? { adam } : {}),
          ...(optim ? { optim: optim.name, optimArgs: optim.args } : {}),
          trainer: sft ? 'sft' : 'lm',
          ...(packing ? { packing, maxLength: PACKED } : {}),
          ...(paddingFree ? { paddingFree } : {}),
        }),
      );
      const printed = run(referencePython(), ['test/reference/peft_trainer.py', spec]);
      const trainer = JSON.parse(printed.trim().split('\n').at(-1)!) as TrainerRun;

      expect(trainer.losses).toHaveLength(STEPS);
      expect(trainer.moved).toBeGreaterThan(0.01); // the steps moved the adapter
      for (const [i, workers] of [1, 2].entries()) {
        const lines = stepLines(join(work, `w${workers}`, 'metrics.jsonl'));
        const losses = lines.map((m) => m.loss!);
        expect(losses).toHaveLength(STEPS);
        if (sft) expectTokenMetrics(lines, trainer, `${workers} workers`);
        losses.forEach((l, step) =>
          expect(Math.abs(l - trainer.losses[step]!), `${workers}: step ${step + 1}`).toBeLessThan(
            1e-4,
          ),
        );
        // Every element within 1% of the largest movement but AdamW's few near-zero-gradient
        // ones (float32 here, float64 there), and those within 10% of it.
        const c = trainer.compare[folders[i]!]!;
        expect(c.over1PercentOfMoved, `${workers} workers`).toBeLessThanOrEqual(c.elements / 1000);
        expect(c.maxAbsDiff, `${workers} workers`).toBeLessThan(0.1 * trainer.moved);
      }
    },
    300_000,
  );
});
