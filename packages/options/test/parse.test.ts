import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  UsageError,
  defineCommand,
  givenOptions,
  helpText,
  mathOptions,
  parseCommand,
  withValues,
} from '../src/index.js';
import { editDistance } from '../src/suggest.js';

const spec = defineCommand({
  name: 'demo',
  summary: 'A demo command.',
  configFile: true,
  options: {
    config: { kind: 'string', value: 'FILE', description: 'option values as JSON' },
    model: { kind: 'string', required: true, description: 'model folder' },
    'lora-r': { kind: 'int', min: 1, default: 8, affects: 'math', description: 'rank' },
    lr: {
      kind: 'number',
      default: 2e-4,
      affects: 'math',
      aliases: ['learning_rate'],
      description: 'learning rate',
    },
    shift: { kind: 'number', description: 'may be negative' },
    init: {
      kind: 'string',
      choices: ['kaiming', 'pissa'],
      default: 'kaiming',
      description: 'init',
    },
    resume: { kind: 'string', description: 'checkpoint' },
    target: { kind: 'list', default: ['c_attn'], description: 'modules' },
    rslora: { kind: 'boolean', description: 'rank-stabilised' },
  },
});

const parse = (argv: string[]) => {
  const values = parseCommand(spec, argv);
  if (values === 'help') throw new Error('unexpected help');
  return values;
};

describe('parseCommand', () => {
  it('types each value from the spec, camel-cased', () => {
    const v = parse(['--model', 'm', '--lora-r', '4', '--init', 'pissa']);
    expectTypeOf(v.loraR).toEqualTypeOf<number>();
    expectTypeOf(v.init).toEqualTypeOf<'kaiming' | 'pissa'>();
    expectTypeOf(v.resume).toEqualTypeOf<string | undefined>();
    expectTypeOf(v.target).toEqualTypeOf<string[]>();
    expectTypeOf(v.rslora).toEqualTypeOf<boolean>();
    expectTypeOf(v.model).toEqualTypeOf<string>();
    // @ts-expect-error: a misspelt option is a compile error
    void v.loraRank;
    expect(v).toMatchObject({
      model: 'm',
      loraR: 4,
      init: 'pissa',
      target: ['c_attn'],
      rslora: false,
    });
    expect(v.resume).toBeUndefined();
  });

  it('tells given options from defaults', () => {
    const v = parse(['--model', 'm', '--lr', '0.1']);
    expect([...givenOptions(v)].sort()).toEqual(['lr', 'model']);
  });

  it('withValues copies the values, changed, and which were given; a spread forgets that', () => {
    const v = parse(['--model', 'm', '--lr', '0.1']);
    const copy = withValues(v, { lr: 0.2 });
    expect(copy).toMatchObject({ model: 'm', lr: 0.2 });
    expect(v.lr).toBe(0.1);
    expect([...givenOptions(copy)].sort()).toEqual(['lr', 'model']);
    expect([...givenOptions({ ...v })]).toEqual([]);
  });

  it('accepts negative numbers after a numeric option', () => {
    expect(parse(['--model', 'm', '--shift', '-1.5']).shift).toBe(-1.5);
    expect(parse(['--model', 'm', '--shift=-2']).shift).toBe(-2);
    expect(() => parse(['--model', 'm', '--lora-r', '-1'])).toThrow(
      /--lora-r must be >= 1, got "-1"/,
    );
  });

  it('refuses bad values naming the option and what it must be', () => {
    expect(() => parse(['--model', 'm', '--lora-r', '2.5'])).toThrow(
      /--lora-r must be an integer, got "2.5"/,
    );
    expect(() => parse(['--model', 'm', '--init', 'xavier'])).toThrow(/one of kaiming, pissa/);
    expect(() => parse([])).toThrow(UsageError);
    expect(() => parse(['--model', 'm', '--nope'])).toThrow(/Unknown option '--nope'/);
  });

  it("names the option an unknown flag or --config key meant: another tool's name, a typo, a prefix", () => {
    const refused = (argv: string[]) => {
      try {
        parse(argv);
      } catch (err) {
        return (err as Error).message;
      }
      throw new Error(`${argv.join(' ')} was accepted`);
    };
    expect(refused(['--model', 'm', '--learning-rate', '1'])).toBe(
      "demo: Unknown option '--learning-rate'; did you mean --lr (the name here for " +
        'learning_rate)?; see lorafleet demo --help',
    );
    expect(refused(['--model', 'm', '--lora_r=4'])).toMatch(/'--lora_r'; did you mean --lora-r\?;/);
    expect(refused(['--model', 'm', '--modle', 'x'])).toMatch(/did you mean --model\?;/);
    expect(refused(['--model', 'm', '--res', 'x'])).toMatch(/did you mean --resume\?;/);
    expect(refused(['--model', 'm', '--rlora'])).toMatch(/did you mean --rslora\?;/);
    expect(refused(['--model', 'm', '--lora'])).toMatch(/did you mean --lora-r\?;/);
    // Nothing close: no guess, the pointer to --help stays.
    expect(refused(['--model', 'm', '--nope'])).toBe(
      "demo: Unknown option '--nope'; see lorafleet demo --help",
    );
    expect(refused(['--model', 'm', '--batch-size', '2'])).not.toMatch(/did you mean/);
    // A --config key gets the same, written as a JSON key.
    const file = join(mkdtempSync(join(tmpdir(), 'options-')), 'c.json');
    writeFileSync(file, JSON.stringify({ model: 'm', learning_rate: 0.1 }));
    expect(refused(['--config', file])).toBe(
      `demo: --config ${file}: unknown option "learning_rate"; did you mean "lr" (the name ` +
        'here for learning_rate)? (see lorafleet demo --help for the names)',
    );
    writeFileSync(file, JSON.stringify({ model: 'm', lora_r: 2 }));
    expect(refused(['--config', file])).toMatch(/unknown option "lora_r"; did you mean "lora-r"\?/);
  });

  it('measures a misspelling in edits, a swap of neighbours counting one', () => {
    expect(editDistance('lr', 'lr')).toBe(0);
    expect(editDistance('epoch', 'epochs')).toBe(1);
    expect(editDistance('modle', 'model')).toBe(1);
    expect(editDistance('seed', 'steps')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
  });

  it('reads --config, with flags winning over it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'options-'));
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ model: 'from-file', 'lora-r': 2, lr: 0.5 }));
    const v = parse(['--config', file, '--lr', '0.25']);
    expect(v).toMatchObject({ model: 'from-file', loraR: 2, lr: 0.25 });
    writeFileSync(file, JSON.stringify({ modell: 'x' }));
    expect(() => parse(['--config', file])).toThrow(/unknown option "modell"/);
    // A bad value names the file it came from; a file that is not JSON (YAML) says what it takes.
    writeFileSync(file, JSON.stringify({ model: 'm', lr: 'fast' }));
    expect(() => parse(['--config', file])).toThrow(`--config ${file}: --lr must be a number`);
    writeFileSync(file, 'lr: 0.5\n');
    expect(() => parse(['--config', file])).toThrow(
      /is not JSON [\s\S]*a JSON object of option names to values/,
    );
    expect(() => parse(['--config', join(dir, 'missing.json')])).toThrow(/cannot read --config/);
  });

  it('reads an option from its environment variable when the flag is absent', () => {
    const withEnv = defineCommand({
      name: 'daemon',
      usage: 'lorafleet-worker',
      summary: 'A daemon.',
      options: {
        coordinator: { kind: 'string', required: true, env: 'X_COORDINATOR', description: 'URL' },
        timeout: { kind: 'number', min: 1, default: 60, env: 'X_TIMEOUT', description: 's' },
        rejoin: { kind: 'boolean', env: 'X_REJOIN', description: 'again' },
      },
    });
    const env = { X_COORDINATOR: 'tcp://a:1', X_TIMEOUT: '5', X_REJOIN: '1' };
    expect(parseCommand(withEnv, [], env)).toMatchObject({
      coordinator: 'tcp://a:1',
      timeout: 5,
      rejoin: true,
    });
    expect(parseCommand(withEnv, ['--timeout', '7'], env)).toMatchObject({ timeout: 7 });
    expect(() => parseCommand(withEnv, [], { ...env, X_TIMEOUT: '0' })).toThrow(
      /X_TIMEOUT: --timeout must be >= 1/,
    );
    expect(() => parseCommand(withEnv, [], {})).toThrow(/--coordinator is required/);
    expect(helpText(withEnv)).toMatch(/^usage: lorafleet-worker \[options\][^]*env X_COORDINATOR/);
  });

  it('lists the math options and prints help', () => {
    expect(mathOptions(spec)).toEqual(['lora-r', 'lr']);
    expect(parseCommand(spec, ['--help'])).toBe('help');
    expect(helpText(spec)).toMatch(/--lora-r INT\s+rank \(default: 8\)/);
  });
});
