// The `lorafleet` command: dispatches to one subcommand; every error becomes
// one line on stderr and a non-zero exit.
import { type CommandSpec, type Options, UsageError, helpText, parseCommand } from './args.js';
import { dashboardSpec, runDashboard } from './commands/dashboard.js';
import { evalSpec, runEval } from './commands/eval.js';
import { extractSpec, runExtract } from './commands/extract.js';
import { generateSpec, runGenerate } from './commands/generate.js';
import { initSpec, runInit } from './commands/init.js';
import { inspectSpec, runInspect } from './commands/inspect.js';
import { keysSpec, runKeys } from './commands/keys.js';
import { mergeSpec, runMerge } from './commands/merge.js';
import { runTrain, trainSpec } from './commands/train.js';

const COMMANDS: [CommandSpec, (o: Options) => Promise<void>][] = [
  [initSpec, runInit],
  [trainSpec, runTrain],
  [evalSpec, runEval],
  [generateSpec, runGenerate],
  [mergeSpec, runMerge],
  [extractSpec, runExtract],
  [inspectSpec, runInspect],
  [keysSpec, runKeys],
  [dashboardSpec, runDashboard],
];

function usage(): string {
  const width = Math.max(...COMMANDS.map(([s]) => s.name.length)) + 2;
  return [
    'usage: lorafleet <command> [options]',
    '',
    'LoRA fine-tuning of GPT-2-layout models on TensorFlow.js.',
    '',
    'commands:',
    ...COMMANDS.map(
      ([s]) => `  ${s.name.padEnd(width)}${s.summary.split('. ')[0]!.replace(/\.$/, '')}`,
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
  const entry = COMMANDS.find(([s]) => s.name === name);
  if (!entry) {
    console.error(`lorafleet: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  const [spec, run] = entry;
  try {
    const options = parseCommand(spec, rest);
    if (options === 'help') {
      console.log(helpText(spec));
      return 0;
    }
    await run(options);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    console.error(`lorafleet ${name}: ${message.replace(new RegExp(`^${name}: `), '')}`);
    if (!(err instanceof UsageError) && process.env.LORAFLEET_DEBUG && err instanceof Error)
      console.error(err.stack);
    return err instanceof UsageError ? 2 : 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
