// The command line itself: help texts, and exit status 2 with a message that
// names the culprit for every kind of usage mistake.
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, lorafleet } from './helpers.js';

/** Each command's required options, and a valid value for each (parsing only, no file is read). */
const REQUIRED: Record<string, Record<string, string>> = {
  init: { config: 'tiny.json', out: 'models/tiny' },
  train: { model: 'models/tiny', data: 'train.jsonl', out: 'runs/a' },
  eval: { model: 'models/tiny', data: 'valid.jsonl' },
  generate: { model: 'models/tiny', prompt: 'Once' },
  merge: { model: 'models/tiny', adapter: 'runs/a/adapter', out: 'models/merged' },
  extract: { base: 'models/tiny', tuned: 'models/tuned', rank: '2', out: 'runs/x' },
  inspect: { adapter: 'runs/a/adapter' },
  dashboard: { run: 'runs/a' },
  keys: { out: 'keys', name: 'coordinator' },
};
const COMMANDS = Object.keys(REQUIRED);

function flags(values: Record<string, string>): string[] {
  return Object.entries(values).flatMap(([name, value]) => [`--${name}`, value]);
}

beforeAll(ensureBuilt, 300_000);

describe.concurrent('help', () => {
  it('lorafleet --help lists every command and exits 0', async () => {
    const { code, stdout } = await lorafleet(['--help']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^usage: lorafleet <command>/);
    for (const command of COMMANDS) expect(stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
    // The model families it knows, from the registry (not a list that goes stale).
    expect(stdout).toMatch(
      /model_type gpt2, llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3_text, gemma3, granite, smollm3, phi3, olmo2, olmo3, exaone4, glm, glm4\)/,
    );
  });

  it.each(COMMANDS)('lorafleet %s --help shows every required option', async (command) => {
    const { code, stdout, stderr } = await lorafleet([command, '--help']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(new RegExp(`^usage: lorafleet ${command} \\[options\\]`));
    for (const option of Object.keys(REQUIRED[command]!)) {
      // The option's row (possibly wrapped onto the next line) says it is required.
      expect(stdout).toMatch(new RegExp(`--${option}\\b[^\\n]*\\n?[^\\n]*\\(required\\)`));
    }
  });
});

describe.concurrent('usage errors exit 2 and say what is wrong', () => {
  it('an unknown command', async () => {
    const { code, stderr } = await lorafleet(['frobnicate', '--model', 'x']);
    expect(code).toBe(2);
    expect(stderr).toContain('unknown command "frobnicate"');
  });

  it('an unknown option points to --help', async () => {
    const { code, stderr } = await lorafleet(['train', ...flags(REQUIRED.train!), '--bogus', '1']);
    expect(code).toBe(2);
    expect(stderr).toContain('--bogus');
    expect(stderr).toContain('see lorafleet train --help');
  });

  it('a PEFT, transformers or torchrun name, or a typo, names the option meant', async () => {
    const train = ['train', ...flags(REQUIRED.train!)];
    const cases: [string[], string][] = [
      [['--learning-rate', '1e-3'], 'did you mean --lr (the name here for learning_rate)?'],
      [['--target_modules', 'q_proj'], 'did you mean --target (the name here for target_modules)?'],
      [['--nproc-per-node', '2'], 'did you mean --workers (the name here for nproc_per_node)?'],
      [['--warmup-ratio', '0.1'], 'did you mean --warmup-steps (the name here for warmup_ratio)?'],
      [
        ['--group_by_length'],
        'did you mean --train-sampling-strategy (the name here for group_by_length)?',
      ],
      [['--epoch', '2'], 'did you mean --epochs?'],
      // A launcher's --rank is not LoRA's: the refusal says which is which.
      [['--rank', '16'], "this task's rank in a launched job: LoRA's rank r is --lora-r"],
    ];
    for (const [extra, hint] of cases) {
      const { code, stderr } = await lorafleet([...train, ...extra]);
      expect(code, extra.join(' ')).toBe(2);
      expect(stderr).toContain(hint);
    }
  });

  it('a value starting with a dash says how to pass it', async () => {
    const { code, stderr } = await lorafleet([
      ...['generate', '--model', 'models/tiny'],
      ...['--prompt', '-hello'],
    ]);
    expect(code).toBe(2);
    expect(stderr).toContain("'--prompt=-"); // node's hint: --prompt=-XYZ
    expect(stderr).toContain('see lorafleet generate --help');
  });

  it.each(COMMANDS)('%s without its last required option names it', async (command) => {
    const required = Object.entries(REQUIRED[command]!);
    const [missing] = required.pop()!;
    const { code, stderr } = await lorafleet([command, ...flags(Object.fromEntries(required))]);
    expect(code).toBe(2);
    expect(stderr).toContain(`lorafleet ${command}: --${missing} is required`);
  });

  it.each([
    ['train', 'lora-r', '0'],
    ['train', 'lr', 'abc'],
    ['train', 'steps', '2.5'],
    ['eval', 'backend', 'nope'],
    // `--temperature -1` is taken for a second flag by node's parseArgs; `=` keeps it a value.
    ['generate', 'temperature=', '-1'],
    ['extract', 'rank', '0'],
    ['init', 'tokenizer', 'sentencepiece'],
  ])('%s --%s %s is rejected, naming the option', async (command, option, value) => {
    const given = option.endsWith('=') ? [`--${option}${value}`] : [`--${option}`, value];
    const { code, stderr } = await lorafleet([command, ...flags(REQUIRED[command]!), ...given]);
    expect(code).toBe(2);
    expect(stderr).toContain(`lorafleet ${command}: --${option.replace('=', '')} must be`);
    expect(stderr).toContain(JSON.stringify(value));
  });
});
