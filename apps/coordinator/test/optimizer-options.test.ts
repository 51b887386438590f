// --optim and --optim-args as the command line gives them: every transformers
// name runs its optimizer (the quantized ones with float32 state and a
// warning), optim_args are read as transformers reads them and checked as
// torch checks them, and an --adam-* option the optimizer does not read is
// warned of. The updates themselves: packages/core/test/optimizers.test.ts.
import { describe, expect, it } from 'vitest';
import { parseCommand } from '../src/args.js';
import { OPTIM_NAMES } from '../src/training/optimizer-options.js';
import { optimizerFrom } from '../src/training/optimizer-settings.js';
import { trainSpec } from '../src/training/train-spec.js';

function from(...argv: string[]) {
  const o = parseCommand(trainSpec, ['--model', 'm', '--data', 'd', '--out', 'o', ...argv], {});
  if (o === 'help') throw new Error('unexpected --help');
  return optimizerFrom(o);
}

describe('--optim', () => {
  it("runs every name of transformers' it lists; the quantized ones warn", () => {
    for (const [name, entry] of Object.entries(OPTIM_NAMES)) {
      const { settings, warnings } = from('--optim', name);
      expect(settings.kind, name).toBe(entry.kind);
      expect(warnings.length, name).toBe('quantized' in entry ? 1 : 0);
    }
    expect(from('--optim', 'paged_lion_8bit').warnings).toEqual([
      "--optim paged_lion_8bit: the optimizer state stays in float32 (small for LoRA): the update is the unquantized one's, not paged_lion_8bit's",
    ]);
  });

  it("gives each optimizer transformers' settings: torch's defaults, lr and weight decay, Lion the Adam betas", () => {
    const common = { lr: 0.01, weightDecay: 0.1 };
    const base = ['--lr', '0.01', '--weight-decay', '0.1'];
    expect(from(...base).settings).toEqual({
      kind: 'adamw',
      ...common,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
    });
    expect(from(...base, '--optim', 'sgd').settings).toEqual({
      kind: 'sgd',
      ...common,
      momentum: 0,
      dampening: 0,
      nesterov: false,
    });
    expect(from(...base, '--optim', 'adagrad').settings).toEqual({
      kind: 'adagrad',
      ...common,
      lrDecay: 0,
      eps: 1e-10,
      initialAccumulatorValue: 0,
    });
    expect(from(...base, '--optim', 'rmsprop').settings).toEqual({
      kind: 'rmsprop',
      ...common,
      alpha: 0.99,
      eps: 1e-8,
      momentum: 0,
    });
    expect(from(...base, '--optim', 'adafactor').settings).toEqual({
      kind: 'adafactor',
      ...common,
      eps1: 1e-30,
      clipThreshold: 1,
      decayRate: -0.8,
      beta1: null,
    });
    expect(from(...base, '--optim', 'lion_32bit', '--adam-beta2', '0.99').settings).toEqual({
      kind: 'lion',
      ...common,
      beta1: 0.9,
      beta2: 0.99,
    });
  });

  it('reads --optim-args as transformers reads optim_args', () => {
    expect(
      from('--optim', 'sgd', '--optim-args', 'momentum=0.9, nesterov=True').settings,
    ).toMatchObject({
      momentum: 0.9,
      dampening: 0,
      nesterov: true,
    });
    expect(
      from('--optim', 'adagrad', '--optim-args', 'lr_decay=0.01,eps=1e-6').settings,
    ).toMatchObject({
      lrDecay: 0.01,
      eps: 1e-6,
    });
    expect(
      from('--optim', 'rmsprop', '--optim-args', 'alpha=0.9,momentum=0.5,eps=1e-6').settings,
    ).toMatchObject({
      alpha: 0.9,
      momentum: 0.5,
      eps: 1e-6,
    });
  });

  it('refuses what transformers would ignore or torch would refuse, saying what to give', () => {
    const refused: [string[], string][] = [
      [
        ['--optim', 'adamw_torch', '--optim-args', 'betas=0.9'],
        '--optim-args betas: adamw takes none here (its betas: --adam-beta1, --adam-beta2)',
      ],
      [
        ['--optim', 'adafactor', '--optim-args', 'beta1=0.9'],
        '--optim-args beta1: adafactor takes none here',
      ],
      [
        ['--optim', 'sgd', '--optim-args', 'weight_decay=0.1'],
        '--optim-args weight_decay: use --weight-decay',
      ],
      [
        ['--optim', 'sgd', '--optim-args', 'momentum'],
        '--optim-args "momentum": give key=value pairs',
      ],
      [
        ['--optim', 'sgd', '--optim-args', 'momentum=-1'],
        '--optim-args momentum=-1: it must be >= 0',
      ],
      [
        ['--optim', 'sgd', '--optim-args', 'nesterov=true'],
        'nesterov=true needs a momentum above 0 and dampening 0',
      ],
      [
        ['--optim', 'sgd', '--optim-args', 'momentum=0.9,nesterov=maybe'],
        'nesterov=maybe: give true or false',
      ],
      [['--optim', 'lion_32bit', '--adam-beta1', '1'], '--adam-beta1 1: it must be in [0, 1)'],
    ];
    for (const [argv, message] of refused)
      expect(() => from(...argv), argv.join(' ')).toThrow(message);
  });

  it('warns of --adam-* options the optimizer does not read', () => {
    expect(
      from('--optim', 'sgd', '--adam-beta1', '0.8', '--adam-epsilon', '1e-6').warnings,
    ).toEqual(['--adam-beta1, --adam-epsilon do nothing with --optim sgd (as in transformers)']);
    expect(from('--optim', 'lion_32bit', '--adam-epsilon', '1e-6').warnings).toEqual([
      '--adam-epsilon does nothing with --optim lion_32bit (as in transformers)',
    ]);
    expect(from('--optim', 'lion_32bit', '--adam-beta1', '0.95').warnings).toEqual([]);
  });
});
