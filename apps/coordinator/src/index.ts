export {
  type CommandSpec,
  type CommandValues,
  type OptionSpec,
  UsageError,
  helpText,
  parseCommand,
} from './args.js';
export { Progress, formatSeconds } from './progress.js';
export { compareAdapters, describeAdapter } from './commands/inspect.js';
