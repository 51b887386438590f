// The `lorafleet` command: dispatches to one subcommand; every error becomes
// one line on stderr and a non-zero exit.
import { settleBackend } from '@lorafleet/core';
import { FAMILIES } from '@lorafleet/models';
import {
  type CommandSpec,
  type OptionSpecs,
  type OptionValues,
  UsageError,
  helpText,
  parseCommand,
} from './args.js';
import { dashboardSpec, runDashboard } from './commands/dashboard.js';
import { evalSpec, runEval } from './commands/eval.js';
import { extractSpec, runExtract } from './commands/extract.js';
import { generateSpec, runGenerate } from './commands/generate.js';
import { initSpec, runInit } from './commands/init.js';
import { inspectSpec, runInspect } from './commands/inspect.js';
import { keysSpec, runKeys } from './commands/keys.js';
import { mergeSpec, runMerge } from './commands/merge.js';
import { runTrain, trainSpec } from './commands/train.js';

/** A command: its spec, and what runs with the values parsed from it. */
interface Command {
  spec: CommandSpec;
  /** Parses argv with the spec and runs; 'help' when --help was asked. */
  run(argv: readonly string[]): Promise<'help' | void>;
}

function command<O extends OptionSpecs>(
  spec: CommandSpec<O>,
  run: (values: OptionValues<O>) => Promise<void>,
): Command {
  return {
    spec,
    run: async (argv) => {
      const values = parseCommand(spec, argv);
      return values === 'help' ? 'help' : run(values);
    },
  };
}

const COMMANDS: Command[] = [
  command(initSpec, runInit),
  command(trainSpec, runTrain),
  command(evalSpec, runEval),
  command(generateSpec, runGenerate),
  command(mergeSpec, runMerge),
  command(extractSpec, runExtract),
  command(inspectSpec, runInspect),
  command(keysSpec, runKeys),
  command(dashboardSpec, runDashboard),
];

function usage(): string {
  const width = Math.max(...COMMANDS.map(({ spec }) => spec.name.length)) + 2;
  return [
    'usage: lorafleet <command> [options]',
    '',
    `LoRA fine-tuning of causal language models (model_type ${Object.keys(FAMILIES).join(', ')}) on TensorFlow.js.`,
    '',
    'commands:',
    ...COMMANDS.map(
      ({ spec: s }) => `  ${s.name.padEnd(width)}${s.summary.split('. ')[0]!.replace(/\.$/, '')}`,
    ),
    '',
    "run 'lorafleet <command> --help' for a command's options",
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name === undefined ? 1 : 0;
  }
  const entry = COMMANDS.find(({ spec }) => spec.name === name);
  if (!entry) {
    console.error(`lorafleet: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  try {
    if ((await entry.run(rest)) === 'help') {
      console.log(helpText(entry.spec));
      return 0;
    }
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    console.error(`lorafleet ${name}: ${message.replace(new RegExp(`^${name}: `), '')}`);
    if (!(err instanceof UsageError) && process.env.LORAFLEET_DEBUG && err instanceof Error)
      console.error(err.stack);
    return err instanceof UsageError ? 2 : 1;
  }
}

// Device work still in flight at exit crashes Dawn (SIGSEGV on SwiftShader): let it finish first.
main(process.argv.slice(2)).then(
  async (code) => {
    await settleBackend().catch(() => undefined);
    process.exit(code);
  },
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
